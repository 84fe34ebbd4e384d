//! The device manager (4802) and soft bus (4700) system abilities over [`Softbus`].

use crate::api::{
    self, BindArgs, BindSocketArgs, FileResultArgs, ListenArgs, LocalDevice, PinView, SendArgs,
    SendFileArgs, SendStreamArgs,
};
use crate::service::Softbus;
use bytes::Bytes;
use oxh_ipc::{ConnHandle, RemoteError, decode, encode};
use oxh_samgr::{CallContext, Method, SystemAbility};
use std::sync::Arc;

/// OpenHarmony's permission for device-manager calls.
pub const ACCESS_SERVICE_DM: &str = "ohos.permission.ACCESS_SERVICE_DM";
/// OpenHarmony's permission for cross-device data: soft bus sessions need it.
pub const DISTRIBUTED_DATASYNC: &str = "ohos.permission.DISTRIBUTED_DATASYNC";

const DM_METHODS: &[Method] = &[
    Method::with_permission(
        api::dm::GET_LOCAL_DEVICE_INFO,
        "GetLocalDeviceInfo",
        ACCESS_SERVICE_DM,
    ),
    Method::with_permission(api::dm::DISCOVER, "GetDiscoveredDevices", ACCESS_SERVICE_DM),
    Method::with_permission(api::dm::ISSUE_PIN, "GeneratePinCode", ACCESS_SERVICE_DM),
    Method::with_permission(api::dm::BIND, "BindTarget", ACCESS_SERVICE_DM),
    Method::with_permission(api::dm::UNBIND, "UnbindTarget", ACCESS_SERVICE_DM),
    Method::with_permission(
        api::dm::LIST_TRUSTED,
        "GetTrustedDeviceList",
        ACCESS_SERVICE_DM,
    ),
    Method::with_permission(
        api::dm::SUBSCRIBE_STATE,
        "OnDeviceStateChange",
        ACCESS_SERVICE_DM,
    ),
    Method::with_permission(api::dm::ADD_PEER, "AddStaticPeer", ACCESS_SERVICE_DM),
];

const BUS_METHODS: &[Method] = &[
    Method::with_permission(api::bus::LISTEN, "Listen", DISTRIBUTED_DATASYNC),
    Method::with_permission(api::bus::BIND, "Bind", DISTRIBUTED_DATASYNC),
    Method::with_permission(api::bus::SEND, "Send", DISTRIBUTED_DATASYNC),
    Method::with_permission(api::bus::SHUTDOWN, "Shutdown", DISTRIBUTED_DATASYNC),
    Method::with_permission(api::bus::SEND_FILE, "SendFile", DISTRIBUTED_DATASYNC),
    Method::with_permission(api::bus::RECV_FILE, "RecvFile", DISTRIBUTED_DATASYNC),
    Method::with_permission(api::bus::FILE_RESULT, "FileResult", DISTRIBUTED_DATASYNC),
    Method::with_permission(api::bus::SEND_STREAM, "SendStream", DISTRIBUTED_DATASYNC),
    Method::with_permission(api::bus::MAX_STREAM, "GetMaxStream", DISTRIBUTED_DATASYNC),
];

/// The device manager SA.
pub struct DeviceManagerSa(pub Arc<Softbus>);

#[async_trait::async_trait]
impl SystemAbility for DeviceManagerSa {
    fn methods(&self) -> &'static [Method] {
        DM_METHODS
    }

    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        let sb = &self.0;
        match code {
            api::dm::GET_LOCAL_DEVICE_INFO => Ok(encode(&LocalDevice {
                info: sb.local_info().clone(),
                network_id: sb.network_id().to_string(),
                bus_addr: sb.bus_addr().map(|a| a.to_string()).unwrap_or_default(),
            })),
            api::dm::DISCOVER => Ok(encode(&sb.discovered())),
            api::dm::ISSUE_PIN => {
                let (pin, valid_secs) = sb.issue_pin()?;
                Ok(encode(&PinView {
                    pin: pin.to_string(),
                    valid_secs,
                }))
            }
            api::dm::BIND => {
                let a: BindArgs = decode(&data)?;
                Ok(encode(&sb.bind(&a.id, &a.pin).await?))
            }
            api::dm::UNBIND => {
                let id: String = decode(&data)?;
                sb.unbind(&id).await?;
                Ok(encode(&()))
            }
            api::dm::LIST_TRUSTED => Ok(encode(&sb.trusted())),
            api::dm::SUBSCRIBE_STATE => {
                let sub: u64 = decode(&data)?;
                sb.subscribe_state(ctx.conn.clone(), sub);
                Ok(encode(&()))
            }
            api::dm::ADD_PEER => {
                let a: String = decode(&data)?;
                let addr = a
                    .parse()
                    .map_err(|_| RemoteError::invalid(format!("{a:?} is not HOST:PORT")))?;
                sb.add_peer(addr);
                Ok(encode(&()))
            }
            _ => Err(RemoteError::invalid(format!("unknown code {code}"))),
        }
    }

    fn dump(&self, _args: &[String]) -> String {
        let i = self.0.local_info();
        format!(
            "DeviceManagerService (4802)\n  local device: {} ({}, type {:#04x})\n  udid: {}\n  os: {}\n{}",
            i.name,
            i.device_type.as_str(),
            i.device_type_id,
            i.udid,
            i.os_version,
            self.0.dump()
        )
    }

    fn on_client_died(&self, conn: &ConnHandle) {
        self.0.client_died(conn);
    }
}

/// The soft bus SA (sockets).
pub struct SoftbusSa(pub Arc<Softbus>);

#[async_trait::async_trait]
impl SystemAbility for SoftbusSa {
    fn methods(&self) -> &'static [Method] {
        BUS_METHODS
    }

    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        let sb = &self.0;
        match code {
            api::bus::LISTEN => {
                let a: ListenArgs = decode(&data)?;
                sb.listen(&ctx.conn, &a.name, a.sub)?;
                Ok(encode(&()))
            }
            api::bus::BIND => {
                let a: BindSocketArgs = decode(&data)?;
                Ok(encode(&sb.bind_socket(&ctx.conn, a).await?))
            }
            api::bus::SEND => {
                let a: SendArgs = decode(&data)?;
                sb.send(&ctx.conn, a).await?;
                Ok(encode(&()))
            }
            api::bus::SHUTDOWN => {
                let s: u64 = decode(&data)?;
                sb.shutdown_socket(&ctx.conn, s).await?;
                Ok(encode(&()))
            }
            api::bus::SEND_FILE => {
                let a: SendFileArgs = decode(&data)?;
                sb.send_file(&ctx.conn, a).await?;
                Ok(encode(&()))
            }
            api::bus::RECV_FILE => {
                let s: u64 = decode(&data)?;
                Ok(encode(&sb.recv_file(&ctx.conn, s).await?))
            }
            api::bus::FILE_RESULT => {
                let a: FileResultArgs = decode(&data)?;
                sb.file_result(&ctx.conn, a).await?;
                Ok(encode(&()))
            }
            api::bus::SEND_STREAM => {
                let a: SendStreamArgs = decode(&data)?;
                sb.send_stream(&ctx.conn, &a)?;
                Ok(encode(&()))
            }
            api::bus::MAX_STREAM => {
                let s: u64 = decode(&data)?;
                Ok(encode(&(sb.max_stream(&ctx.conn, s)? as u64)))
            }
            _ => Err(RemoteError::invalid(format!("unknown code {code}"))),
        }
    }

    fn dump(&self, _args: &[String]) -> String {
        format!("SoftBusServer (4700)\n{}", self.0.dump())
    }

    fn on_client_died(&self, conn: &ConnHandle) {
        self.0.client_died(conn);
    }
}
