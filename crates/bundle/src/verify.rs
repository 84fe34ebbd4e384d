//! Verifying a HAP's signature as OpenHarmony's appverify does, each check apart: the
//! content digest, the PKCS#7 signature, the chain to a trust root, the signed profile and
//! its fields (bundle name, validity, debug device ids, signer = profile certificate).
//! Pure: trust roots, the device id and the clock come in [`VerifyOptions`].

use crate::codesign;
use crate::error::{BundleError, code};
use crate::model::strings;
use crate::package::{EntryInfo, Hap, ZipView};
use crate::pkcs7;
use crate::signing::{self, BLOCK_PROFILE, BLOCK_SIGNATURE, SigningBlock};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use x509_parser::prelude::*;

/// What to verify against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Trust roots (DER).
    pub roots: Vec<Vec<u8>>,
    /// Accept an expired (or not yet valid) profile.
    pub ignore_expiry: bool,
    /// This device's UDID, checked against a debug profile's device-ids; `None` skips it.
    pub device_id: Option<String>,
    /// Now, in Unix seconds; 0 skips the validity check.
    pub now: u64,
}

/// The signed provisioning profile's fields; in JSON by the profile's own keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Profile {
    /// `type`: debug or release.
    #[serde(rename = "type")]
    pub kind: String,
    /// app-distribution-type.
    #[serde(rename = "app-distribution-type")]
    pub distribution_type: String,
    /// bundle-info.bundle-name.
    pub bundle_name: String,
    /// bundle-info.apl (normal when absent).
    pub apl: String,
    /// bundle-info.app-feature.
    pub app_feature: String,
    /// bundle-info.developer-id.
    pub developer_id: String,
    /// The signing certificate (development- or distribution-certificate), PEM.
    pub certificate: String,
    /// validity.not-before, Unix seconds.
    pub not_before: u64,
    /// validity.not-after, Unix seconds.
    pub not_after: u64,
    /// acls.allowed-acls.
    #[serde(rename = "allowed-acls")]
    pub acls: Vec<String>,
    /// debug-info.device-ids.
    pub device_ids: Vec<String>,
    /// uuid.
    pub uuid: String,
    /// bundle-info.app-identifier: a release app's code signatures carry it as ownerID.
    #[serde(default, rename = "appIdentifier")]
    pub app_identifier: String,
}

fn secs(v: Option<&Value>) -> u64 {
    let n = v.and_then(Value::as_u64).unwrap_or(0);
    // Some profiles write milliseconds.
    if n > 100_000_000_000 { n / 1000 } else { n }
}

/// Parses profile JSON.
pub fn parse_profile(json: &[u8]) -> Result<Profile, BundleError> {
    let v: Value = serde_json::from_slice(json).map_err(|e| {
        BundleError::new(
            code::PROFILE_PARSE_FAIL,
            format!("profile is not JSON: {e}"),
        )
    })?;
    let bi = v
        .get("bundle-info")
        .ok_or_else(|| BundleError::new(code::PROFILE_PARSE_FAIL, "profile has no bundle-info"))?;
    let st = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |o: Option<&Value>, k: &str| o.map(|o| strings(o, k)).unwrap_or_default();
    let kind = st(&v, "type");
    let cert = if kind == "debug" {
        st(bi, "development-certificate")
    } else {
        st(bi, "distribution-certificate")
    };
    let apl = st(bi, "apl");
    Ok(Profile {
        distribution_type: st(&v, "app-distribution-type"),
        bundle_name: st(bi, "bundle-name"),
        apl: if apl.is_empty() { "normal".into() } else { apl },
        app_feature: st(bi, "app-feature"),
        developer_id: st(bi, "developer-id"),
        certificate: cert,
        not_before: secs(v.get("validity").and_then(|x| x.get("not-before"))),
        not_after: secs(v.get("validity").and_then(|x| x.get("not-after"))),
        acls: list(v.get("acls"), "allowed-acls"),
        device_ids: list(v.get("debug-info"), "device-ids"),
        uuid: st(&v, "uuid"),
        app_identifier: st(bi, "app-identifier"),
        kind,
    })
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// digest, signature, chain, profile-signature, profile-chain, profile-certificate,
    /// profile-bundle-name, profile-validity, profile-device.
    pub name: String,
    /// Passed; `None` when not checked (e.g. no device id offline).
    pub ok: Option<bool>,
    /// What was found.
    pub detail: String,
    /// The result code if it failed.
    pub code: i32,
}

/// Everything `hap verify` reports (camelCase in JSON: blockVersion, appId).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The file has a signing block.
    pub signed: bool,
    /// Block version (2 or 3).
    pub block_version: u32,
    /// Sub-block types present, hex.
    pub blocks: Vec<String>,
    /// Checks in order.
    pub checks: Vec<Check>,
    /// Signer certificate subject CN.
    pub signer: String,
    /// Chain subjects, signer first.
    pub chain: Vec<String>,
    /// appId: bundleName + "_" + base64(signer public key).
    pub app_id: String,
    /// The profile, if readable.
    pub profile: Option<Profile>,
    /// The code signature (fs-verity of the HAP's code and of each native library), when
    /// the package carries one or was checked for one.
    #[serde(default, rename = "codeSignature")]
    pub code_signature: Option<codesign::CodeSignReport>,
}

impl Report {
    /// The first failed check as an error; `Ok` when every check passed or was not run.
    pub fn result(&self) -> Result<(), BundleError> {
        if !self.signed {
            return Err(BundleError::new(
                code::NO_SIGNATURE,
                "the package has no signing block (unsigned)",
            ));
        }
        let failed = |c: &&Check| c.ok == Some(false);
        let mut first = self.checks.iter().find(failed);
        // A changed library breaks the package digest (and the HAP's code region, when it
        // lies there) too, which cannot say which file changed; its own signature can.
        if first.is_some_and(|c| c.name == "digest" || c.name == CHECK_CODE_SIGNATURE) {
            let named = |n: &str| self.checks.iter().filter(failed).find(|c| c.name == n);
            first = named(CHECK_CODE_SIGNATURE_LIB)
                .or_else(|| named(CHECK_CODE_SIGNATURE))
                .or(first);
        }
        match first {
            Some(c) => Err(BundleError::new(
                c.code,
                format!("{}: {}", c.name, c.detail),
            )),
            None => Ok(()),
        }
    }
    fn push(&mut self, name: &str, ok: Option<bool>, detail: impl Into<String>, code: i32) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
            code,
        });
    }
    /// The failed check of the package's PKCS#7 signature.
    fn bad_signature(&mut self, e: impl std::fmt::Display) {
        self.push(
            "signature",
            Some(false),
            format!("PKCS#7: {e}"),
            code::VERIFY_PKCS7_FAIL,
        );
    }
    /// The check `name` of a certificate chain: its subjects, and whether (or why not) it
    /// ends at a trusted root.
    fn push_chain(&mut self, name: &str, ch: &pkcs7::Chain) {
        let subjects = ch.subjects.join(" -> ");
        let detail = match &ch.problem {
            None => format!("{subjects} -> trusted root"),
            Some(p) => format!("{subjects}: {p}"),
        };
        self.push(name, Some(ch.trusted), detail, code::VERIFY_PKCS7_FAIL);
    }
}

/// The public key (SubjectPublicKeyInfo DER) of a certificate, base64: the key part of appId.
pub fn public_key_b64(cert_der: &[u8]) -> Option<String> {
    let (_, c) = X509Certificate::from_der(cert_der).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(c.public_key().raw))
}

/// Decodes every certificate in a PEM text.
pub fn pem_certs(text: &[u8]) -> Vec<Vec<u8>> {
    ::pem::parse_many(text)
        .map(|v| {
            v.into_iter()
                .filter(|p| p.tag() == "CERTIFICATE")
                .map(|p| p.into_contents())
                .collect()
        })
        .unwrap_or_default()
}

/// One HAP of a package as verified: where it came from and what decides it.
#[derive(Debug, Clone)]
pub struct PackageHap {
    /// Its entry name in an `.app` (empty for a bare HAP).
    pub name: String,
    /// Its bytes.
    pub data: Vec<u8>,
    /// The report that decides it: its own signature's, or, for an unsigned HAP inside a
    /// signed `.app`, the pack's (checked against this HAP's bundle and module).
    pub report: Report,
    /// For a HAP inside a signed `.app`: the pack's report.
    pub pack: Option<Report>,
}

/// Verifies a HAP, or an `.app` (DevEco's packs for HarmonyOS NEXT carry the signing block
/// on the pack, as a HAP's, and the HAPs inside unsigned): the pack's block is checked with
/// the rules of a HAP's, with the bundle of each inner HAP; an inner HAP that is signed
/// must pass its own check too. Changing one byte of the pack, or of a HAP inside it,
/// breaks the pack's digest.
pub fn verify_package(
    data: &[u8],
    limits: &crate::package::Limits,
    opts: &VerifyOptions,
) -> Result<Vec<PackageHap>, BundleError> {
    use crate::package::{self, Kind};
    if package::kind(data, limits)? == Kind::Hap {
        let h = package::open_hap(data, limits)?;
        let report = verify(&h, opts);
        return Ok(vec![PackageHap {
            name: String::new(),
            data: data.to_vec(),
            report,
            pack: None,
        }]);
    }
    let (layout, block) = {
        let z = package::ZipView::open(data, limits)?;
        (z.layout, z.block.clone())
    };
    let mut out = Vec::new();
    for (name, bytes) in package::app_haps(data, limits)? {
        let h = package::open_hap(&bytes, limits)?;
        let own = verify(&h, opts);
        let pack = block.as_ref().map(|b| {
            // The pack's bytes and block, judged for this HAP's bundle.
            let view = Hap {
                data,
                layout,
                block: Some(b.clone()),
                entries: Vec::new(),
                info: h.info.clone(),
                abis: h.abis.clone(),
                limits: *limits,
            };
            verify(&view, opts)
        });
        let report = match (&pack, own.signed) {
            // A signed inner HAP must pass its own check, and the pack's.
            (Some(p), true) if p.result().is_err() => p.clone(),
            (_, true) => own,
            (Some(p), false) => p.clone(),
            (None, false) => own,
        };
        drop(h);
        out.push(PackageHap {
            name,
            data: bytes,
            report,
            pack,
        });
    }
    Ok(out)
}

/// Name of the check of the HAP's code signature; each library's is named
/// [`CHECK_CODE_SIGNATURE_LIB`].
pub const CHECK_CODE_SIGNATURE: &str = "code-signature";
/// Name of the check of one native library's code signature.
pub const CHECK_CODE_SIGNATURE_LIB: &str = "code-signature-lib";

/// Verifies a HAP; every check is reported, the first failure decides [`Report::result`].
/// The code signature is checked last, against the signer and profile found before it.
pub fn verify(hap: &Hap<'_>, opts: &VerifyOptions) -> Report {
    let mut r = verify_signature(hap, opts);
    if let Some(block) = &hap.block {
        check_code_signature(hap, block, opts, &mut r);
    }
    r
}

/// The code-signature checks: present or not, the HAP's code region, each native library.
/// A package without a code-signing block passes here (OpenHarmony's permissive mode); a
/// release device's app host refuses its libraries at load time.
fn check_code_signature(hap: &Hap<'_>, block: &SigningBlock, opts: &VerifyOptions, r: &mut Report) {
    let fail = code::CODE_SIGNATURE_FAILED;
    let csb = match codesign::find(hap.data, block) {
        Ok(Some(b)) => b,
        Ok(None) => {
            r.push(
                CHECK_CODE_SIGNATURE,
                None,
                "none: no code-signing block in the property block (0x20000003)",
                fail,
            );
            r.code_signature = Some(codesign::CodeSignReport::default());
            return;
        }
        Err(e) => {
            r.push(CHECK_CODE_SIGNATURE, Some(false), e.to_string(), fail);
            r.code_signature = Some(codesign::CodeSignReport {
                present: true,
                error: Some(e.to_string()),
                ..Default::default()
            });
            return;
        }
    };
    let signer = block
        .value(hap.data, BLOCK_SIGNATURE)
        .and_then(|s| pkcs7::parse(s).ok())
        .and_then(|sd| sd.verify().ok());
    let owner_id = r.profile.as_ref().map(|p| {
        if p.kind == "debug" {
            codesign::DEBUG_OWNER_ID.to_string()
        } else {
            p.app_identifier.clone()
        }
    });
    let expect = codesign::Expect {
        signer,
        roots: &opts.roots,
        owner_id: owner_id.filter(|o| !o.is_empty()),
    };
    let libs = match read_libs(hap) {
        Ok(l) => l,
        Err(e) => {
            r.push(CHECK_CODE_SIGNATURE_LIB, Some(false), e.reason, fail);
            return;
        }
    };
    let cr = codesign::verify(hap.data, block.start, &csb, &libs, &expect);
    for (name, f) in cr
        .hap
        .iter()
        .map(|f| (CHECK_CODE_SIGNATURE, f))
        .chain(cr.libs.iter().map(|f| (CHECK_CODE_SIGNATURE_LIB, f)))
    {
        let detail = if f.ok && name == CHECK_CODE_SIGNATURE_LIB {
            format!("{}: {}", f.name, f.detail)
        } else {
            f.detail.clone()
        };
        let detail = if f.ok {
            detail
        } else {
            format!("{detail} ({})", codesign::cs::describe(f.error_code))
        };
        r.push(name, Some(f.ok), detail, fail);
    }
    r.code_signature = Some(cr);
}

/// The native libraries hapsigner signs ([`codesign::is_signed_lib`]), inflated, each bounded
/// by the package limits.
fn read_libs(hap: &Hap<'_>) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
    let names: Vec<&EntryInfo> = hap
        .entries
        .iter()
        .filter(|e| !e.is_dir && codesign::is_signed_lib(&e.name))
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut z = ZipView::open(hap.data, &hap.limits)?;
    names
        .into_iter()
        .map(|e| Ok((e.name.clone(), z.read(&e.name, e.size)?)))
        .collect()
}

/// The package signature and profile checks.
fn verify_signature(hap: &Hap<'_>, opts: &VerifyOptions) -> Report {
    let mut r = Report::default();
    let data = hap.data;
    let Some(block) = &hap.block else {
        return r;
    };
    r.signed = true;
    r.block_version = block.version;
    r.blocks = block
        .blocks
        .iter()
        .map(|b| format!("{:#x}", b.kind))
        .collect();
    let Some(sig) = block.value(data, BLOCK_SIGNATURE) else {
        r.push(
            "signature",
            Some(false),
            "no signature sub-block (0x20000000)",
            code::NO_SIGNATURE,
        );
        return r;
    };
    // Digest.
    let computed =
        signing::content_digest(data, &hap.layout, block.start, &block.optional_values(data));
    let sd = match pkcs7::parse(sig) {
        Ok(sd) => sd,
        Err(e) => {
            r.bad_signature(e);
            return r;
        }
    };
    let claimed = sd.content.and_then(signing::parse_signed_content);
    match claimed.as_ref().and_then(|v| v.first()) {
        Some((_, d)) if d[..] == computed[..] => r.push(
            "digest",
            Some(true),
            format!("SHA-256 over 1 MiB chunks = {}", hex32(&computed)),
            0,
        ),
        Some((_, d)) => r.push(
            "digest",
            Some(false),
            format!(
                "the package was changed after signing: computed {}, signed {}",
                hex32(&computed),
                hex32(d)
            ),
            code::BAD_DIGEST,
        ),
        None => r.push(
            "digest",
            Some(false),
            "the signature's content names no digest",
            code::BAD_DIGEST,
        ),
    }
    // Signature.
    let signer = match sd.verify() {
        Ok(c) => {
            r.signer = pkcs7::subject_cn(c);
            r.push(
                "signature",
                Some(true),
                format!("PKCS#7 signed by \"{}\"", r.signer),
                0,
            );
            Some(c)
        }
        Err(e) => {
            r.bad_signature(e);
            None
        }
    };
    // Chain.
    if let Some(c) = signer {
        let ch = pkcs7::build_chain(c, &sd.certs, &opts.roots);
        r.chain = ch.subjects.clone();
        r.push_chain("chain", &ch);
        r.app_id = format!(
            "{}_{}",
            hap.info.app.bundle_name,
            public_key_b64(c).unwrap_or_default()
        );
    }
    // Profile.
    let Some(pb) = block.value(data, BLOCK_PROFILE) else {
        r.push(
            "profile",
            Some(false),
            "no profile sub-block (0x20000002)",
            code::NO_PROFILE_BLOCK,
        );
        return r;
    };
    // AppGallery-distributed packages carry the profile as plain JSON: it is covered by the
    // package signature (it is an optional block before it) but not signed on its own.
    let (psd, plain) = if pb.first() == Some(&b'{') {
        r.push(
            "profile-signature",
            None,
            "plain JSON profile (as AppGallery distributes it), covered by the package signature only",
            code::VERIFY_PKCS7_FAIL,
        );
        (None, Some(pb))
    } else {
        match pkcs7::parse(pb) {
            Ok(p) => (Some(p), None),
            Err(e) => {
                r.push(
                    "profile-signature",
                    Some(false),
                    format!("{e}"),
                    code::PROFILE_PARSE_FAIL,
                );
                return r;
            }
        }
    };
    let profile_json = plain.or_else(|| psd.as_ref().and_then(|p| p.content));
    if let Some(psd) = &psd {
        match psd.verify() {
            Ok(pc) => {
                r.push(
                    "profile-signature",
                    Some(true),
                    format!("signed by \"{}\"", pkcs7::subject_cn(pc)),
                    0,
                );
                let ch = pkcs7::build_chain(pc, &psd.certs, &opts.roots);
                r.push_chain("profile-chain", &ch);
            }
            Err(e) => r.push(
                "profile-signature",
                Some(false),
                format!("{e}"),
                code::VERIFY_PKCS7_FAIL,
            ),
        }
    }
    let profile = match profile_json.map(parse_profile) {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            r.push("profile", Some(false), e.reason, e.code);
            return r;
        }
        None => {
            r.push(
                "profile",
                Some(false),
                "the profile signature holds no content",
                code::PROFILE_PARSE_FAIL,
            );
            return r;
        }
    };
    // Signer = the profile's certificate.
    if plain.is_some() {
        r.push(
            "profile-certificate",
            None,
            "not applicable: the store re-signed the package with its own certificate",
            code::VERIFY_PKCS7_FAIL,
        );
    } else if let Some(c) = signer {
        let same = pem_certs(profile.certificate.as_bytes())
            .first()
            .is_some_and(|pc| public_key_b64(pc) == public_key_b64(c));
        r.push(
            "profile-certificate",
            Some(same),
            if same {
                "the signer is the profile's certificate".to_string()
            } else {
                "the signer is not the certificate the profile names".to_string()
            },
            code::VERIFY_PKCS7_FAIL,
        );
    }
    let bn = &hap.info.app.bundle_name;
    r.push(
        "profile-bundle-name",
        Some(profile.bundle_name == *bn),
        format!("profile \"{}\", package \"{bn}\"", profile.bundle_name),
        code::BUNDLE_NAME_MISMATCH,
    );
    if opts.now == 0 || opts.ignore_expiry {
        r.push(
            "profile-validity",
            None,
            format!(
                "{}..{} (not checked)",
                profile.not_before, profile.not_after
            ),
            code::APP_SOURCE_NOT_TRUSTED,
        );
    } else {
        let ok = profile.not_before <= opts.now && opts.now <= profile.not_after;
        r.push(
            "profile-validity",
            Some(ok),
            format!(
                "valid {}..{}, now {}{}",
                profile.not_before,
                profile.not_after,
                opts.now,
                if ok { "" } else { ": expired or not yet valid" }
            ),
            code::APP_SOURCE_NOT_TRUSTED,
        );
    }
    if profile.kind == "debug" {
        match &opts.device_id {
            Some(d) => {
                let ok = profile.device_ids.iter().any(|x| x == d);
                r.push(
                    "profile-device",
                    Some(ok),
                    format!(
                        "debug profile lists {} device(s){}",
                        profile.device_ids.len(),
                        if ok {
                            ", this one among them"
                        } else {
                            ", not this one"
                        }
                    ),
                    code::APP_SOURCE_NOT_TRUSTED,
                );
            }
            None => r.push(
                "profile-device",
                None,
                format!(
                    "debug profile lists {} device(s) (no device to check)",
                    profile.device_ids.len()
                ),
                code::APP_SOURCE_NOT_TRUSTED,
            ),
        }
    }
    r.profile = Some(profile);
    r
}

fn hex32(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signer (DER) of a package whose content digest and PKCS#7 signature verify; the
/// chain is not judged (the bundle manager did that when it installed the package).
pub fn package_signer<'a>(hap: &Hap<'a>) -> Result<&'a [u8], codesign::CodeSignError> {
    let bad = |m: String| codesign::CodeSignError::new(codesign::cs::FILE_INVALID, m);
    let data = hap.data;
    let block = hap
        .block
        .as_ref()
        .ok_or_else(|| bad("the package has no signing block".into()))?;
    let sig = block
        .value(data, BLOCK_SIGNATURE)
        .ok_or_else(|| bad("the package has no signature sub-block".into()))?;
    let sd = pkcs7::parse(sig).map_err(|e| bad(format!("its signature: {e}")))?;
    let computed =
        signing::content_digest(data, &hap.layout, block.start, &block.optional_values(data));
    let claimed = sd.content.and_then(signing::parse_signed_content);
    let matches = claimed
        .as_ref()
        .and_then(|v| v.first())
        .is_some_and(|(_, d)| d[..] == computed[..]);
    if !matches {
        return Err(bad(
            "the package was changed after signing (its digest does not match)".into(),
        ));
    }
    sd.verify()
        .map_err(|e| bad(format!("its signature does not verify: {e}")))
}

/// Checks `bytes`, an installed copy of the package's native library `name` (its ZIP entry
/// name), against the code signature in `hap`: `Ok(false)` when `hap` does not sign
/// `name` (another module may), `Ok(true)` when it does and the bytes verify, made by the
/// package's own signer.
pub fn verify_installed_lib(
    hap: &Hap<'_>,
    name: &str,
    bytes: &[u8],
) -> Result<bool, codesign::CodeSignError> {
    let Some(block) = &hap.block else {
        return Ok(false);
    };
    let Some(csb) = codesign::find(hap.data, block)? else {
        return Ok(false);
    };
    let Some(info) = csb.lib(name) else {
        return Ok(false);
    };
    let signer = package_signer(hap)?;
    let expect = codesign::Expect {
        signer: Some(signer),
        ..Default::default()
    };
    codesign::verify_lib(name, bytes, info, &expect)?;
    Ok(true)
}
