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
    Method::with_permission(api::bus::SEND_FILE_FD, "SendFile", DISTRIBUTED_DATASYNC),
    Method::with_permission(api::bus::RECV_FILE_FD, "RecvFile", DISTRIBUTED_DATASYNC),
];

/// Reads a postcard [`SendArgs`] without copying its data: the part is a slice of the IPC
/// frame it came in. `None` when it is not well formed (the caller then decodes it the usual
/// way, for the usual error).
fn parse_send_args(b: &Bytes) -> Option<(u64, crate::proto::DataType, Bytes, bool)> {
    let mut at = 0;
    let socket = crate::proto::take_varint(b, &mut at)?;
    let kind = match crate::proto::take_varint(b, &mut at)? {
        0 => crate::proto::DataType::Message,
        1 => crate::proto::DataType::Bytes,
        2 => crate::proto::DataType::File,
        _ => return None,
    };
    let len = usize::try_from(crate::proto::take_varint(b, &mut at)?).ok()?;
    let end = at.checked_add(len)?;
    let more = match b.get(end..)? {
        [0] => false,
        [1] => true,
        _ => return None,
    };
    Some((socket, kind, b.slice(at..end), more))
}

/// Fuzzing hook (fuzz/): parses [`SendArgs`] as the soft bus SA does, and checks that when
/// postcard decodes the same bytes too, both read the same arguments.
#[doc(hidden)]
pub fn fuzz_parse_send_args(body: &[u8]) {
    let b = Bytes::copy_from_slice(body);
    if let (Some((socket, kind, part, more)), Ok(a)) =
        (parse_send_args(&b), decode::<SendArgs>(body))
    {
        assert_eq!(
            (a.socket, a.kind, &a.data[..], a.more),
            (socket, kind, &part[..], more)
        );
    }
}

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
            api::dm::GET_LOCAL_DEVICE_INFO => Ok(encode(&LocalDevice::new(
                sb.local_info().clone(),
                sb.network_id().to_string(),
                sb.bus_addr().map(|a| a.to_string()).unwrap_or_default(),
            ))),
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
                let (socket, kind, part, more) = match parse_send_args(&data) {
                    Some(a) => a,
                    None => {
                        let a: SendArgs = decode(&data)?;
                        (a.socket, a.kind, Bytes::from(a.data), a.more)
                    }
                };
                sb.send(&ctx.conn, socket, kind, part, more).await?;
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
            api::bus::SEND_FILE_FD => {
                let a: api::SendFileFdArgs = decode(&data)?;
                let fd = ctx
                    .conn
                    .take_fd()
                    .ok_or_else(|| RemoteError::invalid("SendFile by descriptor needs one"))?;
                Ok(encode(&sb.send_file_fd(&ctx.conn, a, fd).await?))
            }
            api::bus::RECV_FILE_FD => {
                let a: api::RecvFileFdArgs = decode(&data)?;
                let fd = ctx
                    .conn
                    .take_fd()
                    .ok_or_else(|| RemoteError::invalid("RecvFile by descriptor needs one"))?;
                Ok(encode(&sb.recv_file_fd(&ctx.conn, a, fd).await?))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_args_parse_as_postcard_decodes_them() {
        for (data, more, kind) in [
            (vec![], false, crate::proto::DataType::Message),
            (
                (0..300u32).map(|i| i as u8).collect(),
                true,
                crate::proto::DataType::Bytes,
            ),
        ] {
            let a = SendArgs {
                socket: 1 << 35,
                kind,
                data: data.clone(),
                more,
            };
            let b = Bytes::from(encode(&a));
            let (socket, k, part, m) = parse_send_args(&b).unwrap();
            assert_eq!((socket, k, &part[..], m), (a.socket, kind, &data[..], more));
            // Truncated or padded input is not taken.
            assert!(parse_send_args(&b.slice(..b.len() - 1)).is_none());
            let mut longer = b.to_vec();
            longer.push(0);
            assert!(parse_send_args(&Bytes::from(longer)).is_none());
        }
    }
}
