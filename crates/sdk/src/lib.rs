//! The oxharmony SDK: what applications and tools use to talk to their device, in the way
//! `@ohos.*` modules serve ArkTS apps. One [`Device`] is one connection to the local daemon;
//! each module (`samgr`, `param`, `hilog`, `device_manager`) is a thin typed proxy over it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), oxh_sdk::Error> {
//! let dev = oxh_sdk::Device::connect_default().await?;
//! dev.param().set("persist.demo.x", "1").await?;
//! assert_eq!(dev.param().get("persist.demo.x").await?, "1");
//! # Ok(()) }
//! ```

use oxh_ipc::Client;
use std::path::{Path, PathBuf};

pub use oxh_ipc::{Caller, IpcError as Error, RemoteError, TokenType};

pub mod ability;
pub mod bundle;
pub mod bus;
pub mod device_manager;
pub mod fs;
pub mod hilog;
pub mod kv;
pub mod param;
pub mod rdb;
pub mod samgr;

/// Picks the data dir the way every tool does: the explicit one, else `OXH_DATA_DIR`, else
/// `~/.local/share/oxharmony`.
pub fn resolve_data_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(oxh_kal::DATA_DIR_ENV).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => oxh_kal::default_data_dir(),
    }
}

/// A connection to one local device's daemon.
#[derive(Clone)]
pub struct Device {
    client: Client,
    data_dir: PathBuf,
    /// Held while a bytes payload's parts are written, so that tasks sending bytes at once
    /// on this connection cannot interleave their parts (the daemon joins a socket's parts
    /// in the order they arrive).
    bytes_send: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Device {
    /// Connects to the device whose data dir is `data_dir`.
    pub async fn connect(data_dir: impl AsRef<Path>) -> Result<Self, Error> {
        let data_dir = data_dir.as_ref().to_path_buf();
        let socket = oxh_kal::DeviceDirs::new(&data_dir).socket_path();
        let client = Client::connect(&socket).await?;
        Ok(Self {
            client,
            data_dir,
            bytes_send: Default::default(),
        })
    }

    /// Connects to the daemon listening at `socket` (an app in its sandbox: see
    /// [`Device::connect_in_app`]). Its data dir is unknown there and reads as empty.
    pub async fn connect_socket(socket: &Path) -> Result<Self, Error> {
        let client = Client::connect(socket).await?;
        Ok(Self {
            client,
            data_dir: PathBuf::new(),
            bytes_send: Default::default(),
        })
    }

    /// Connects to the device chosen by `OXH_DATA_DIR`, or the default one.
    pub async fn connect_default() -> Result<Self, Error> {
        Self::connect(resolve_data_dir(None)).await
    }

    /// The device's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The raw IPC client, for SAs that have no proxy here yet.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The system ability manager.
    pub fn samgr(&self) -> samgr::Samgr<'_> {
        samgr::Samgr { dev: self }
    }

    /// System parameters (`@ohos.systemParameterEnhance`).
    pub fn param(&self) -> param::Param<'_> {
        param::Param { dev: self }
    }

    /// Logging (`@ohos.hilog`).
    pub fn hilog(&self) -> hilog::HiLog<'_> {
        hilog::HiLog { dev: self }
    }

    /// Access tokens and permissions (`@ohos.abilityAccessCtrl`, `@ohos.privacyManager`).
    pub fn atm(&self) -> oxh_atm::api::AtmProxy<'_> {
        oxh_atm::api::AtmProxy::new(&self.client)
    }

    /// The bundle manager (`@ohos.bundle.installer`, `@ohos.bundle.bundleManager`).
    pub fn bundle(&self) -> bundle::Bundle<'_> {
        bundle::Bundle { dev: self }
    }

    /// Soft bus sockets.
    pub fn bus(&self) -> bus::Bus<'_> {
        bus::Bus { dev: self }
    }

    /// Files across devices (`@ohos.file.fs` copy).
    pub fn fs(&self) -> fs::Fs<'_> {
        fs::Fs { dev: self }
    }

    /// The device manager (`@ohos.distributedDeviceManager`).
    pub fn device_manager(&self) -> device_manager::DeviceManager<'_> {
        device_manager::DeviceManager { dev: self }
    }
}
