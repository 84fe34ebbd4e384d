//! Errors of the bundle manager, with OpenHarmony's install/uninstall result codes and the
//! exact messages its `bm` tool prints for them (bundlemanager_bundle_framework, bm-tool.md).

use oxh_ipc::RemoteError;

/// OpenHarmony's bundle-manager result codes, defined once here; the SDK and `bm` match on
/// these and print [`message`] for them.
pub mod code {
    /// "error: fail to verify pkcs7 file." The PKCS#7 signature does not verify, or its chain
    /// does not reach a trusted root.
    pub const VERIFY_PKCS7_FAIL: i32 = 9_568_257;
    /// "error: install parse profile missing prop." module.json/config.json lacks a field.
    pub const PARSE_MISSING_PROP: i32 = 9_568_259;
    /// "error: install internal error."
    pub const INTERNAL_ERROR: i32 = 9_568_260;
    /// "error: install parse failed." Not a readable package, or its profile is not JSON.
    pub const PARSE_FAILED: i32 = 9_568_262;
    /// "error: install version downgrade."
    pub const VERSION_DOWNGRADE: i32 = 9_568_263;
    /// "error: install verification failed."
    pub const VERIFICATION_FAILED: i32 = 9_568_264;
    /// "error: install permission denied." (no ohos.permission.INSTALL_BUNDLE)
    pub const PERMISSION_DENIED: i32 = 9_568_266;
    /// "error: install entry already exist." A second entry module under another name.
    pub const ENTRY_ALREADY_EXIST: i32 = 9_568_267;
    /// "error: install file path invalid."
    pub const FILE_PATH_INVALID: i32 = 9_568_269;
    /// "error: install invalid bundle file." Unsafe or oversized zip content.
    pub const INVALID_BUNDLE_FILE: i32 = 9_568_271;
    /// "error: install already exist." Same bundle installed and `-r` not given.
    pub const ALREADY_EXIST: i32 = 9_568_276;
    /// "error: install failed due to grant request permissions failed."
    pub const GRANT_PERMISSIONS_FAILED: i32 = 9_568_289;
    /// "error: install failed due to update hap token failed."
    pub const UPDATE_HAP_TOKEN_FAILED: i32 = 9_568_290;
    /// "error: moduleName is not unique."
    pub const MODULE_NAME_NOT_UNIQUE: i32 = 9_568_300;
    /// "error: no signature file."
    pub const NO_SIGNATURE: i32 = 9_568_320;
    /// "error: fail to parse signature file."
    pub const PROFILE_PARSE_FAIL: i32 = 9_568_321;
    /// "error: signature verification failed due to not trusted app source." (debug profile
    /// without this device, or an expired profile)
    pub const APP_SOURCE_NOT_TRUSTED: i32 = 9_568_322;
    /// "error: signature verification failed due to not bad digest."
    pub const BAD_DIGEST: i32 = 9_568_323;
    /// "error: signature verification failed due to no profile block."
    pub const NO_PROFILE_BLOCK: i32 = 9_568_328;
    /// "error: verify signature failed." The profile names another bundle.
    pub const BUNDLE_NAME_MISMATCH: i32 = 9_568_329;
    /// "error: install sign info inconsistent." An update signed by another key (appId).
    pub const SIGN_INFO_INCONSISTENT: i32 = 9_568_332;
    /// ERR_INSTALL_CODE_SIGNATURE_FAILED: a code signature (the HAP's fs-verity digest or a
    /// native library's) is missing where the block promises it, or does not verify. The
    /// message is the text OpenHarmony gives apps for it (17700048).
    pub const CODE_SIGNATURE_FAILED: i32 = 9_568_393;
    /// "error: uninstall missing installed bundle."
    pub const UNINSTALL_MISSING_BUNDLE: i32 = 9_568_386;
    /// 17700001 "The specified bundle name is not found." (queries)
    pub const BUNDLE_NOT_FOUND: i32 = 17_700_001;
}

/// The `bm` line OpenHarmony prints for a result code.
pub fn message(c: i32) -> &'static str {
    match c {
        code::VERIFY_PKCS7_FAIL => "error: fail to verify pkcs7 file.",
        code::PARSE_MISSING_PROP => "error: install parse profile missing prop.",
        code::INTERNAL_ERROR => "error: install internal error.",
        code::PARSE_FAILED => "error: install parse failed.",
        code::VERSION_DOWNGRADE => "error: install version downgrade.",
        code::VERIFICATION_FAILED => "error: install verification failed.",
        code::PERMISSION_DENIED => "error: install permission denied.",
        code::ENTRY_ALREADY_EXIST => "error: install entry already exist.",
        code::FILE_PATH_INVALID => "error: install file path invalid.",
        code::INVALID_BUNDLE_FILE => "error: install invalid bundle file.",
        code::ALREADY_EXIST => "error: install already exist.",
        code::GRANT_PERMISSIONS_FAILED => {
            "error: install failed due to grant request permissions failed."
        }
        code::UPDATE_HAP_TOKEN_FAILED => "error: install failed due to update hap token failed.",
        code::MODULE_NAME_NOT_UNIQUE => "error: moduleName is not unique.",
        code::NO_SIGNATURE => "error: no signature file.",
        code::PROFILE_PARSE_FAIL => "error: fail to parse signature file.",
        code::APP_SOURCE_NOT_TRUSTED => {
            "error: signature verification failed due to not trusted app source."
        }
        code::BAD_DIGEST => "error: signature verification failed due to not bad digest.",
        code::NO_PROFILE_BLOCK => "error: signature verification failed due to no profile block.",
        code::BUNDLE_NAME_MISMATCH => "error: verify signature failed.",
        code::SIGN_INFO_INCONSISTENT => "error: install sign info inconsistent.",
        code::CODE_SIGNATURE_FAILED => {
            "error: Failed to install the HAP because the code signature verification failed."
        }
        code::UNINSTALL_MISSING_BUNDLE => "error: uninstall missing installed bundle.",
        code::BUNDLE_NOT_FOUND => "error: The specified bundle name is not found.",
        _ => "error: install internal error.",
    }
}

/// Why a package was refused or an operation failed: a result code plus a reason that names
/// what exactly was wrong (the entry, the field, the check). Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} (code {code}): {reason}", message(*.code))]
pub struct BundleError {
    /// One of [`code`].
    pub code: i32,
    /// What was wrong, for people.
    pub reason: String,
}

impl BundleError {
    /// An error with `code` and a reason.
    pub fn new(code: i32, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
    /// Parse failure (9568262).
    pub fn parse(reason: impl Into<String>) -> Self {
        Self::new(code::PARSE_FAILED, reason)
    }
    /// Unsafe or oversized package content (9568271).
    pub fn invalid_file(reason: impl Into<String>) -> Self {
        Self::new(code::INVALID_BUNDLE_FILE, reason)
    }
    /// Internal failure (9568260), e.g. storage.
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(code::INTERNAL_ERROR, reason)
    }
}

impl From<BundleError> for RemoteError {
    fn from(e: BundleError) -> Self {
        RemoteError::new(e.code, e.reason)
    }
}

/// Splits a remote error back into code and reason (the SDK side of [`From<BundleError>`]).
pub fn from_remote(e: &RemoteError) -> BundleError {
    BundleError::new(e.code, e.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_bm_line_code_and_reason() {
        let e = BundleError::new(code::VERSION_DOWNGRADE, "1 < 2");
        let s = e.to_string();
        assert!(s.starts_with("error: install version downgrade."), "{s}");
        assert!(s.contains("9568263") && s.contains("1 < 2"), "{s}");
    }
}
