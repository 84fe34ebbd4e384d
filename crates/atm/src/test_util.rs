//! What tests of code that uses the manager share: a plain app to install.

use crate::rules::{DlpType, HapInfoParams};

/// An ordinary third-party app `bundle` of user 100 (appIDDesc `BUNDLE_appid`, API 12, from
/// the app gallery), with processes of `uid` once one is assigned.
pub fn app(bundle: &str, uid: Option<u32>) -> HapInfoParams {
    HapInfoParams {
        user_id: 100,
        bundle_name: bundle.into(),
        inst_index: 0,
        dlp_type: DlpType::Common,
        app_id_desc: format!("{bundle}_appid"),
        api_version: 12,
        is_system_app: false,
        app_distribution_type: "app_gallery".into(),
        uid,
    }
}
