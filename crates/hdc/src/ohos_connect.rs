//! Our host's side of an OpenHarmony device's session: [`host_handshake`] runs
//! [`HostAuth`] over a TCP connection (the RSA-PSS signature path, or TLS-PSK when the
//! device offers it) and hands back the session's packet stream.

use crate::hostkey::HostKey;
use crate::ohos::{self, SessionHandShake};
use crate::ohos_auth::{
    Action, CMD_KERNEL_HANDSHAKE, FEATURE_ENCRYPT_TCP, HOST_PUBKEY_SEPARATOR, HostAuth,
    HostOutcome, HostPolicy,
};
use crate::ohos_link::{self, PacketRx, PacketTx};
use crate::ohos_tls::{PskTls, Role, TlsEngine};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a device may take over the whole handshake (its 300 ms pause included).
pub const HOST_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the device said of itself in AUTH_OK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `devname`.
    pub name: String,
    /// `supportfeatures`.
    pub features: Vec<String>,
    /// Whether the session is TLS-PSK.
    pub encrypted: bool,
}

/// The host key as [`HostAuth`] uses it.
struct KeyPolicy<'a> {
    key: &'a HostKey,
    host_name: &'a str,
}

impl HostPolicy for KeyPolicy<'_> {
    fn public_key_message(&self) -> String {
        format!(
            "{}{HOST_PUBKEY_SEPARATOR}{}",
            self.host_name,
            self.key.public_pem()
        )
    }
    fn sign(&self, token: &[u8]) -> String {
        self.key.sign(token)
    }
    fn psk_client(&self, encrypted_psk: &[u8]) -> Result<Box<dyn TlsEngine>, String> {
        let psk = self
            .key
            .decrypt_psk(encrypted_psk)
            .map_err(|e| e.to_string())?;
        Ok(Box::new(
            PskTls::new(Role::Client, &psk).map_err(|e| e.to_string())?,
        ))
    }
}

/// Opens an OpenHarmony session on `tcp` to the device known as `connect_key`, as
/// OpenHarmony's host server does: asks for TLS-PSK when `encrypt` (as its
/// `OHOS_HDC_ENCRYPT_CHANNEL=1`; the device decides, so a device without it gives a
/// plaintext session, see [`DeviceInfo::encrypted`]). A refusal is the device's message,
/// e.g. `[E000002]:The device unauthorized...` for a key it does not know yet.
///
/// The device's CHANNEL_CLOSE `[1]` on channel 0 that follows AUTH_OK comes out of the
/// returned reader; hdc's server answers it with `[0]`.
pub async fn host_handshake(
    tcp: TcpStream,
    key: &HostKey,
    host_name: &str,
    connect_key: &str,
    encrypt: bool,
) -> Result<(PacketRx, PacketTx, DeviceInfo), String> {
    let _ = tcp.set_nodelay(true);
    let (rd, wr) = tcp.into_split();
    let (mut rx, mut tx) = (PacketRx::new(rd), PacketTx::new(wr));
    let policy = KeyPolicy { key, host_name };
    let mut id = [0u8; 4];
    getrandom::fill(&mut id).map_err(|e| e.to_string())?;
    let features: &[&str] = if encrypt { &[FEATURE_ENCRYPT_TCP] } else { &[] };
    let (mut auth, first) = HostAuth::start(u32::from_le_bytes(id), connect_key, features);
    let run = async {
        tx.send(&ohos::packet(0, first.command, &first.payload))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let Some(p) = rx.next().await.map_err(|e| e.to_string())? else {
                return Err("the device closed the connection during the handshake".to_string());
            };
            // The device may send heartbeats (and other channel-0 traffic) meanwhile.
            if p.protect.command_flag != CMD_KERNEL_HANDSHAKE {
                continue;
            }
            let hs = SessionHandShake::decode(&p.payload).map_err(|e| e.to_string())?;
            for a in auth.on_handshake(hs, &policy).map_err(|e| e.to_string())? {
                match a {
                    Action::Send(o) => tx
                        .send(&ohos::packet(0, o.command, &o.payload))
                        .await
                        .map_err(|e| e.to_string())?,
                    Action::Switch(tls) => {
                        ohos_link::switch(&mut rx, &mut tx, tls).map_err(|e| e.to_string())?
                    }
                    Action::Wait(d) => tokio::time::sleep(d).await,
                }
            }
            match auth.outcome() {
                HostOutcome::Pending => {}
                HostOutcome::Connected {
                    device_name,
                    features,
                    encrypted,
                } => {
                    return Ok(DeviceInfo {
                        name: device_name.clone(),
                        features: features.clone(),
                        encrypted: *encrypted,
                    });
                }
                HostOutcome::Unauthorized(m) => return Err(m.clone()),
            }
        }
    };
    let info = tokio::time::timeout(HOST_HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| {
            format!(
                "the device did not finish the handshake in {} s",
                HOST_HANDSHAKE_TIMEOUT.as_secs()
            )
        })??;
    Ok((rx, tx, info))
}
