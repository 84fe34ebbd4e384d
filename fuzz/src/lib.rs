//! What several fuzz targets share.

use oxh_softbus::transport::wire::{WireError, read_frame};
use serde::de::DeserializeOwned;

/// Runs `f` to completion on a single-threaded runtime (what the targets' async readers need).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Reads `data` as a stream of frames of `T` with the bus's frame reader, up to 64 of them:
/// a frame over `max` must be refused as too large; reading stops at the end or the first
/// error.
pub fn read_frames<T: DeserializeOwned>(data: &[u8], max: usize) {
    block_on(async {
        let mut r = data;
        for _ in 0..64 {
            match read_frame::<_, T>(&mut r, max).await {
                Ok(Some(_)) => {}
                Err(WireError::TooLarge { len, max }) => {
                    assert!(len > max);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
    });
}
