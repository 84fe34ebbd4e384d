//! Mission sync: each device tells its trusted peers which of its missions may move now
//! (continuable, continue state ACTIVE), so that a launcher's "continue on" list of another
//! device is at hand and follows its changes (distributedMissionManager's
//! registerMissionListener / notifyMissionsChanged / notifyNetDisconnect).
//!
//! A device sends its list on the data service's session with each bound peer (attributed
//! to the device the session authenticated) when a peer comes online and whenever the list
//! changes; a peer keeps the latest list of each online device and drops it at OFFLINE. A
//! local listener ([`dms_api::REGISTER_MISSION_LISTENER`]) hears one device's list at once and
//! after each change, and that device's disconnect. A list holds at most
//! [`dms_api::MAX_SYNCED_MISSIONS`] missions; a longer one from a peer is cut.

use super::AbilityService;
use crate::dms_api::{self, MissionEvent, MissionInfo, MissionSyncMsg, decode_mission_sync};
use oxh_ipc::ConnHandle;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// How the lists reach the peers (the daemon's data-service session, by udid).
pub trait MissionBus: Send + Sync + 'static {
    /// Sends `bytes` to device `udid` (lost if it is not reachable: it gets the list again
    /// when it comes online).
    fn send(&self, udid: &str, bytes: Vec<u8>);
    /// The udids of the trusted devices online now.
    fn online(&self) -> Vec<String>;
    /// The networkId of online device `udid`.
    fn network_id_of(&self, udid: &str) -> Option<String>;
}

/// One local listener of one device's missions.
struct Listener {
    conn: ConnHandle,
    sub: u64,
    udid: String,
    network_id: String,
    /// Held as long as the listener lives (one of its connection's wait slots).
    _slot: oxh_ipc::WaitSlot,
}

#[derive(Default)]
struct State {
    /// What this device sent last.
    sent: Option<Vec<MissionInfo>>,
    /// Each online peer's latest list, by udid.
    remote: HashMap<String, Vec<MissionInfo>>,
    listeners: Vec<Listener>,
}

/// Mission sync of one device.
pub struct MissionSync {
    ams: Weak<AbilityService>,
    bus: Arc<dyn MissionBus>,
    state: Mutex<State>,
}

impl MissionSync {
    /// Mission sync over `ams`, sending on `bus`; it follows the ability manager's changes
    /// from now on.
    pub fn start(ams: &Arc<AbilityService>, bus: Arc<dyn MissionBus>) -> Arc<Self> {
        let me = Arc::new(MissionSync {
            ams: Arc::downgrade(ams),
            bus,
            state: Mutex::new(State::default()),
        });
        let _ = ams.mission_sync.set(me.clone());
        let weak = Arc::downgrade(&me);
        let ams = ams.clone();
        tokio::spawn(async move {
            loop {
                ams.missions_changed.notified().await;
                let Some(me) = weak.upgrade() else { break };
                me.local_changed();
            }
        });
        me
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// This device's missions that may move now.
    fn local_list(&self) -> Vec<MissionInfo> {
        let Some(ams) = self.ams.upgrade() else {
            return Vec::new();
        };
        let Some(dms) = ams.dms.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        let mut v: Vec<MissionInfo> = dms
            .local_missions()
            .into_iter()
            .filter(|m| m.continuable && !ams.continue_inactive(m.mission_id))
            .collect();
        v.truncate(dms_api::MAX_SYNCED_MISSIONS);
        v
    }

    /// The ability manager changed something: send the list to every online peer if it
    /// changed.
    fn local_changed(&self) {
        let list = self.local_list();
        let changed = self.with(|st| {
            if st.sent.as_ref() == Some(&list) {
                false
            } else {
                st.sent = Some(list.clone());
                true
            }
        });
        if changed {
            let bytes = oxh_ipc::encode(&MissionSyncMsg::Missions(list));
            for udid in self.bus.online() {
                self.bus.send(&udid, bytes.clone());
            }
        }
    }

    /// A peer's message arrived: its list, or its request for ours.
    pub fn on_message(&self, udid: &str, bytes: &[u8]) {
        let list = match decode_mission_sync(bytes) {
            Some(MissionSyncMsg::Missions(list)) => list,
            Some(MissionSyncMsg::Request) => {
                let list = self.local_list();
                self.bus
                    .send(udid, oxh_ipc::encode(&MissionSyncMsg::Missions(list)));
                return;
            }
            None => {
                tracing::warn!(
                    tag = "DistributedSched",
                    "bad mission sync message from a peer dropped"
                );
                return;
            }
        };
        self.with(|st| {
            st.remote.insert(udid.to_string(), list.clone());
            st.listeners.retain(|l| {
                l.udid != udid
                    || l.conn.push_event(
                        l.sub,
                        &oxh_ipc::encode(&MissionEvent::MissionsChanged {
                            network_id: l.network_id.clone(),
                            missions: list.clone(),
                        }),
                    )
            });
        });
    }

    /// A peer came online: it gets this device's list, and is asked for its own (either may
    /// be lost while the session comes up; the listener's request repeats the ask).
    pub fn on_online(&self, udid: &str) {
        let list = self.local_list();
        self.with(|st| st.sent = Some(list.clone()));
        self.bus
            .send(udid, oxh_ipc::encode(&MissionSyncMsg::Missions(list)));
        self.bus
            .send(udid, oxh_ipc::encode(&MissionSyncMsg::Request));
    }

    /// A peer went offline: its list goes, and its listeners hear it (and end).
    pub fn on_offline(&self, udid: &str) {
        self.with(|st| {
            st.remote.remove(udid);
            st.listeners.retain(|l| {
                if l.udid != udid {
                    return true;
                }
                let _ = l.conn.push_event(
                    l.sub,
                    &oxh_ipc::encode(&MissionEvent::NetDisconnect {
                        network_id: l.network_id.clone(),
                    }),
                );
                false
            });
        });
    }

    /// Registers `conn`'s subscription `sub` to the missions of device `udid` (networkId
    /// `network_id`); it hears the latest list at once if there is one.
    pub(super) fn register(
        &self,
        conn: ConnHandle,
        sub: u64,
        udid: String,
        network_id: String,
    ) -> Result<(), oxh_ipc::RemoteError> {
        let slot = conn.hold_wait("mission listener")?;
        let known = self.with(|st| st.remote.contains_key(&udid));
        if !known {
            // No list from it yet (or it was lost): ask; the answer reaches the listener.
            self.bus
                .send(&udid, oxh_ipc::encode(&MissionSyncMsg::Request));
        }
        self.with(|st| {
            if let Some(list) = st.remote.get(&udid) {
                let _ = conn.push_event(
                    sub,
                    &oxh_ipc::encode(&MissionEvent::MissionsChanged {
                        network_id: network_id.clone(),
                        missions: list.clone(),
                    }),
                );
            }
            st.listeners.retain(|l| !l.conn.is_closed());
            st.listeners.push(Listener {
                conn,
                sub,
                udid,
                network_id,
                _slot: slot,
            });
        });
        Ok(())
    }

    /// The latest list of device `udid`, if it sent one.
    pub fn remote_list(&self, udid: &str) -> Option<Vec<MissionInfo>> {
        self.with(|st| st.remote.get(udid).cloned())
    }

    /// The networkId of `udid`, as the bus knows it.
    pub fn network_id_of(&self, udid: &str) -> Option<String> {
        self.bus.network_id_of(udid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::want::Element;

    fn m(id: i32) -> MissionInfo {
        MissionInfo {
            mission_id: id,
            element: Element {
                bundle_name: "com.example.notes".into(),
                module_name: "entry".into(),
                ability_name: "EntryAbility".into(),
            },
            state: "FOREGROUND".into(),
            continuable: true,
        }
    }

    #[test]
    fn a_peers_list_is_cut_to_the_limit_and_garbage_is_dropped() {
        let long: Vec<MissionInfo> = (0..dms_api::MAX_SYNCED_MISSIONS as i32 + 5)
            .map(m)
            .collect();
        let got = decode_mission_sync(&oxh_ipc::encode(&MissionSyncMsg::Missions(long)));
        let Some(MissionSyncMsg::Missions(got)) = got else {
            panic!("{got:?}")
        };
        assert_eq!(got.len(), dms_api::MAX_SYNCED_MISSIONS);
        assert_eq!(got[0], m(0));
        assert_eq!(decode_mission_sync(&[0xff, 0xff, 0xff]), None);
        assert_eq!(
            decode_mission_sync(&oxh_ipc::encode(&MissionSyncMsg::Request)),
            Some(MissionSyncMsg::Request)
        );
    }
}
