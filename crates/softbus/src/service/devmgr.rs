//! The device manager's operations: PINs, discovery listing, bind, unbind and the trusted list.

use crate::api::{SeenView, TrustedView};
use crate::binding::{self, BindFailure};
use crate::discovery::AdvertId;
use crate::transport::NodeInfo;
use oxh_devauth::{Pin, TrustedDevice};
use oxh_ipc::RemoteError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

// OpenHarmony's device-manager failure code (JS level), defined with the other DM codes.
use oxh_devauth::bind::code::DM_ERR_FAILED;

use super::{Softbus, err, now_secs};

impl Softbus {
    pub(super) async fn respond_bind(self: Arc<Self>, inc: crate::transport::BindIncoming) {
        let keep = |peer: &oxh_devauth::BoundPeer| {
            self.trust
                .add(&peer.to_trusted(now_secs()))
                .map_err(|e| e.to_string())
        };
        match binding::respond(
            inc,
            self.me.clone(),
            self.pins.clone(),
            self.epoch,
            &self.probe_info(),
            keep,
        )
        .await
        {
            Ok(None) => tracing::debug!(tag = "devicemanager", "answered a probe"),
            Ok(Some(peer)) => {
                self.trust_changed();
                tracing::info!(
                    tag = "devicemanager",
                    public_name = peer.record.name.as_str(),
                    "bound with a device (target side)"
                );
            }
            Err(e) => {
                tracing::warn!(tag = "devicemanager", "binding attempt failed: {e}");
            }
        }
    }

    /// A fresh PIN for binding (target side).
    pub fn issue_pin(&self) -> Result<(Pin, u64), RemoteError> {
        let mut p = self
            .pins
            .lock()
            .map_err(|_| err(DM_ERR_FAILED, "pin state unavailable"))?;
        let now = oxh_kal::clock::elapsed(self.epoch);
        let pin = p
            .issue(now)
            .map_err(|e| err(e.code(), format!("cannot issue a PIN: {e}")))?;
        let left = p.current(now).map(|(_, left)| left.as_secs()).unwrap_or(60);
        Ok((pin, left))
    }

    /// Devices seen on the network (mDNS), and static peers that answered a probe. Each is
    /// listed under its advert id of the moment; a trusted one is recognised by its advert key
    /// and, when it sends no name, shows the name it bound with.
    pub fn discovered(&self) -> Vec<SeenView> {
        let resolver = self.resolver();
        let name_of = |name: Option<&str>, t: Option<&TrustedDevice>| {
            name.map(str::to_string)
                .or_else(|| t.map(|t| t.name.clone()))
                .unwrap_or_else(|| oxh_devauth::DEFAULT_NAME.to_string())
        };
        let mut out: Vec<SeenView> = Vec::new();
        if let Some(d) = &self.discovery {
            out.extend(d.snapshot().into_iter().filter_map(|s| {
                let a = s.advert.clone()?;
                let t = resolver.resolve(&a.id);
                let key = t.map(|t| t.public_key);
                Some(SeenView {
                    id: a.id.to_hex(),
                    name: name_of(a.name.as_deref(), t),
                    device_type: oxh_devauth::dm_type_name(a.device_type_id).to_string(),
                    device_type_id: a.device_type_id,
                    addresses: s
                        .addresses
                        .iter()
                        .map(|ip| SocketAddr::new(*ip, s.port).to_string())
                        .collect(),
                    trusted: key.is_some(),
                    online: key.is_some_and(|k| self.bus.is_online(&k)),
                })
            }));
        }
        let statics: Vec<(SocketAddr, binding::ProbeInfo)> = self
            .statics
            .lock()
            .map(|s| {
                s.iter()
                    .filter_map(|(a, p)| p.info.clone().map(|i| (*a, i)))
                    .collect()
            })
            .unwrap_or_default();
        for (addr, p) in statics {
            if out.iter().any(|v| v.id == p.id) {
                continue;
            }
            let t = AdvertId::from_hex(&p.id).and_then(|id| resolver.resolve(&id));
            let key = t.map(|t| t.public_key);
            // A probe names the product type only; its DmDeviceType id follows from it.
            let type_id = p
                .device_type
                .parse::<oxh_devauth::DeviceType>()
                .map(|d| d.type_id())
                .unwrap_or(oxh_devauth::dm_type::UNKNOWN);
            out.push(SeenView {
                id: p.id.clone(),
                name: name_of(p.name.as_deref(), t),
                device_type: oxh_devauth::dm_type_name(type_id).to_string(),
                device_type_id: type_id,
                addresses: vec![addr.to_string()],
                trusted: key.is_some(),
                online: key.is_some_and(|k| self.bus.is_online(&k)),
            });
        }
        out
    }

    fn resolve_target(&self, id: &str) -> Result<SocketAddr, RemoteError> {
        if let Ok(a) = id.parse::<SocketAddr>() {
            return Ok(a);
        }
        let seen = self.discovered();
        let hits: Vec<_> = seen
            .iter()
            .filter(|s| s.id.starts_with(id) || s.name == id)
            .collect();
        match hits.as_slice() {
            [one] => one
                .addresses
                .first()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| err(DM_ERR_FAILED, format!("device {id} has no address"))),
            [] => Err(err(
                oxh_ipc::code::INVALID_PARAM,
                format!(
                    "no discovered device matches {id:?}; see `oxh device discover`, or give HOST:PORT"
                ),
            )),
            _ => Err(err(
                oxh_ipc::code::INVALID_PARAM,
                format!("{id:?} matches several devices; give more of the id"),
            )),
        }
    }

    /// Binds with a device using its PIN (initiator side).
    pub async fn bind(self: &Arc<Self>, id: &str, pin: &str) -> Result<TrustedView, RemoteError> {
        let pin: Pin = pin
            .parse()
            .map_err(|_| err(oxh_ipc::code::INVALID_PARAM, "the PIN must be 6 digits"))?;
        let addr = self.resolve_target(id)?;
        let t0 = Instant::now();
        let peer = binding::initiate(&self.bus, addr, self.me.clone(), pin, self.epoch)
            .await
            .map_err(|e: BindFailure| err(e.code(), format!("bind failed: {e}")))?;
        let t = peer.to_trusted(now_secs());
        self.trust
            .add(&t)
            .map_err(|e| err(e.code(), format!("cannot store the trusted device: {e}")))?;
        tracing::info!(
            tag = "devicemanager",
            public_name = t.name.as_str(),
            public_ms = t0.elapsed().as_millis() as u64,
            "bound with a device"
        );
        // Go online right away.
        self.bus.center(|c, now| c.bound(addr, t.public_key, now));
        let online = match self.bus.connect(addr, Some(t.public_key)).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(tag = "devicemanager", "bound, but not connected yet: {e}");
                false
            }
        };
        Ok(TrustedView::new(
            t.udid.clone(),
            t.name.clone(),
            t.device_type_id,
            online,
            self.bus
                .online()
                .into_iter()
                .find(|n| n.udid == t.udid)
                .map(|n| n.network_id),
        ))
    }

    /// Trusted devices, with online state.
    pub fn trusted(&self) -> Vec<TrustedView> {
        let online: HashMap<String, NodeInfo> = self
            .bus
            .online()
            .into_iter()
            .map(|n| (n.udid.clone(), n))
            .collect();
        self.trust
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let n = online.get(&t.udid);
                TrustedView::new(
                    t.udid.clone(),
                    n.map(|n| n.name.clone()).unwrap_or(t.name.clone()),
                    t.device_type_id,
                    n.is_some(),
                    n.map(|n| n.network_id.clone()),
                )
            })
            .collect()
    }

    /// Removes trust with a device, on the peer too when it is online.
    pub async fn unbind(&self, id: &str) -> Result<(), RemoteError> {
        let list = self.trust.list().unwrap_or_default();
        let online = self.bus.online();
        let hits: Vec<_> = list
            .iter()
            .filter(|t| {
                t.udid == id
                    || t.udid.starts_with(id) && id.len() >= 6
                    || t.name == id
                    || online
                        .iter()
                        .any(|n| n.udid == t.udid && n.network_id == id)
            })
            .collect();
        let t = match hits.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(err(
                    oxh_ipc::code::INVALID_PARAM,
                    format!("no trusted device matches {id:?}"),
                ));
            }
            _ => {
                return Err(err(
                    oxh_ipc::code::INVALID_PARAM,
                    format!("{id:?} matches several trusted devices"),
                ));
            }
        };
        self.trust
            .remove(&t.udid)
            .map_err(|e| err(e.code(), e.to_string()))?;
        self.bus.send_unbind(&t.public_key).await;
        self.dbinder.device_unbound(&t.udid);
        self.forget(&t.public_key);
        Ok(())
    }
}
