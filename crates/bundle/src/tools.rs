//! The developer side: `oxh hap keygen` (a dev root CA, a signing certificate and a signed
//! profile), `oxh hap sign` (hapsigner's format: a v3 block with the profile and the PKCS#7
//! signature) and `oxh hap pack` (a directory with module.json5 into a HAP). These run in
//! the CLI, on the developer's files; the daemon never calls them.

use crate::codesign;
use crate::der::{self, oids, tag};
use crate::error::{BundleError, code};
use crate::model;
use crate::pkcs7;
use crate::signing::{self, BLOCK_PROFILE, BLOCK_PROPERTY, BLOCK_SIGNATURE};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

/// What `hap keygen` writes.
#[derive(Debug, Clone)]
pub struct KeySet {
    /// The dev root CA certificate (PEM): what devices add to their trust roots.
    pub root_pem: String,
    /// The root's private key (PKCS#8 PEM), to issue more signing certificates.
    pub root_key_pem: String,
    /// The signing key (PKCS#8 PEM).
    pub dev_key_pem: String,
    /// The signing certificate (PEM), issued by the root.
    pub dev_cert_pem: String,
    /// The signed profile (PKCS#7 DER).
    pub profile_p7b: Vec<u8>,
}

impl KeySet {
    /// Signs `hap` with this set's key, certificate and profile ([`sign_hap`]).
    pub fn sign(&self, hap: &[u8], now: u64) -> Result<Vec<u8>, BundleError> {
        sign_hap(
            hap,
            &self.dev_key_pem,
            self.dev_cert_pem.as_bytes(),
            &self.profile_p7b,
            now,
        )
    }
}

fn ierr(e: impl std::fmt::Display) -> BundleError {
    BundleError::internal(e.to_string())
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CountryName, "CN");
    d.push(DnType::OrganizationName, "oxharmony");
    d.push(DnType::OrganizationalUnitName, "oxharmony dev");
    d.push(DnType::CommonName, cn);
    d
}

/// What the profile grants.
#[derive(Debug, Clone)]
pub struct ProfileSpec {
    /// The bundle it is for.
    pub bundle_name: String,
    /// `debug` (device-ids apply) or `release`.
    pub kind: String,
    /// APL: normal, system_basic, system_core.
    pub apl: String,
    /// allowed-acls.
    pub acls: Vec<String>,
    /// debug-info.device-ids.
    pub device_ids: Vec<String>,
    /// validity, Unix seconds.
    pub not_before: u64,
    /// validity, Unix seconds.
    pub not_after: u64,
}

/// A dev root CA: (certificate PEM, PKCS#8 key PEM).
pub fn dev_root(now: u64) -> Result<(String, String), BundleError> {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(ierr)?;
    let root = root_params(now)?.self_signed(&root_key).map_err(ierr)?;
    Ok((root.pem(), root_key.serialize_pem()))
}

fn root_params(now: u64) -> Result<CertificateParams, BundleError> {
    let mut rp = CertificateParams::new(Vec::<String>::new()).map_err(ierr)?;
    rp.distinguished_name = dn("oxharmony Dev Root CA");
    rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    rp.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    rp.not_before = rcgen::date_time_ymd(2020, 1, 1);
    rp.not_after = rcgen::date_time_ymd(2049, 12, 31);
    rp.serial_number = Some(serial(now, 1));
    Ok(rp)
}

/// Creates a dev root, a signing certificate under it and a profile signed by the signing key.
pub fn keygen(spec: &ProfileSpec, now: u64) -> Result<KeySet, BundleError> {
    let (root_pem, root_key_pem) = dev_root(now)?;
    keygen_under(spec, now, &root_pem, &root_key_pem)
}

/// Like [`keygen`], under an existing root (e.g. the one `oxh sim` devices trust).
pub fn keygen_under(
    spec: &ProfileSpec,
    now: u64,
    root_pem: &str,
    root_key_pem: &str,
) -> Result<KeySet, BundleError> {
    model::check_bundle_name(&spec.bundle_name)?;
    let root_key = KeyPair::from_pem(root_key_pem)
        .map_err(|e| BundleError::internal(format!("root key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(root_pem, &root_key)
        .map_err(|e| BundleError::internal(format!("root certificate: {e}")))?;
    let root_der = crate::verify::pem_certs(root_pem.as_bytes())
        .into_iter()
        .next()
        .ok_or_else(|| BundleError::internal("no certificate in the root PEM"))?;

    let dev_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(ierr)?;
    let mut dp = CertificateParams::new(Vec::<String>::new()).map_err(ierr)?;
    dp.distinguished_name = dn(&format!("{} Application Release", spec.bundle_name));
    dp.is_ca = IsCa::ExplicitNoCa;
    dp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    dp.not_before = rcgen::date_time_ymd(2020, 1, 1);
    dp.not_after = rcgen::date_time_ymd(2049, 12, 31);
    dp.serial_number = Some(serial(now, 2));
    let dev = dp.signed_by(&dev_key, &issuer).map_err(ierr)?;

    let chain = vec![dev.der().to_vec(), root_der];
    let profile_p7b = make_profile(spec, &dev.pem(), &dev_key.serialize_der(), &chain, now)?;
    Ok(KeySet {
        root_pem: root_pem.to_string(),
        root_key_pem: root_key_pem.to_string(),
        dev_key_pem: dev_key.serialize_pem(),
        dev_cert_pem: dev.pem(),
        profile_p7b,
    })
}

fn serial(now: u64, n: u8) -> rcgen::SerialNumber {
    let mut b = now.to_be_bytes().to_vec();
    b.push(n);
    b[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&b)
}

/// The profile JSON for a spec, with the signing certificate embedded.
pub fn profile_json(spec: &ProfileSpec, cert_pem: &str) -> Value {
    let cert_key = if spec.kind == "debug" {
        "development-certificate"
    } else {
        "distribution-certificate"
    };
    let mut v = json!({
        "version-code": 1,
        "version-name": "1.0.0",
        "uuid": format!("oxh-{:x}", spec.not_before),
        "type": spec.kind,
        "app-distribution-type": if spec.kind == "debug" { "none" } else { "os_integration" },
        "validity": {"not-before": spec.not_before, "not-after": spec.not_after},
        "bundle-info": {
            "developer-id": "oxharmony",
            cert_key: cert_pem,
            "bundle-name": spec.bundle_name,
            "apl": spec.apl,
            "app-feature": "hos_normal_app",
        },
        "acls": {"allowed-acls": spec.acls},
        "permissions": {"restricted-permissions": []},
        "issuer": "oxharmony",
    });
    if spec.kind == "debug" {
        v["debug-info"] = json!({"device-id-type": "udid", "device-ids": spec.device_ids});
    }
    v
}

/// Signs profile JSON into a `.p7b`.
pub fn make_profile(
    spec: &ProfileSpec,
    cert_pem: &str,
    key_pkcs8: &[u8],
    chain: &[Vec<u8>],
    now: u64,
) -> Result<Vec<u8>, BundleError> {
    let json = serde_json::to_vec(&profile_json(spec, cert_pem)).map_err(ierr)?;
    pkcs7::sign(&json, key_pkcs8, chain, &utc_time(now)).map_err(ierr)
}

/// UTCTime text (YYMMDDHHMMSSZ) of a Unix time.
pub fn utc_time(t: u64) -> String {
    let t = i64::try_from(t).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%y%m%d%H%M%SZ")
        .to_string()
}

/// The zip without its signing block (for re-signing), or the input if unsigned.
pub fn strip_block(data: &[u8]) -> Result<Vec<u8>, BundleError> {
    let z = signing::zip_layout(data).map_err(|e| BundleError::parse(e.to_string()))?;
    let Some(b) = signing::find_block(data, &z).map_err(|e| BundleError::parse(e.to_string()))?
    else {
        return Ok(data.to_vec());
    };
    let mut out = Vec::with_capacity(data.len() - b.size);
    out.extend_from_slice(&data[..b.start]);
    out.extend_from_slice(&data[z.cd_offset..]);
    let eocd = z.eocd - b.size;
    out[eocd + 16..eocd + 20].copy_from_slice(&(b.start as u32).to_le_bytes());
    Ok(out)
}

/// Signs a HAP with its code signature ([`sign_hap_with`], `sign_code` on).
pub fn sign_hap(
    hap: &[u8],
    key_pem: &str,
    chain_pem: &[u8],
    profile_p7b: &[u8],
    now: u64,
) -> Result<Vec<u8>, BundleError> {
    sign_hap_with(hap, key_pem, chain_pem, profile_p7b, now, true)
}

/// The ownerID a profile gives code signatures: `DEBUG_LIB_ID` for a debug profile, the
/// app-identifier for a release one (none if it has none).
fn owner_id(profile_p7b: &[u8]) -> Option<String> {
    let sd = pkcs7::parse(profile_p7b).ok()?;
    let p = crate::verify::parse_profile(sd.content?).ok()?;
    if p.kind == "debug" {
        Some(codesign::DEBUG_OWNER_ID.into())
    } else {
        Some(p.app_identifier).filter(|a| !a.is_empty())
    }
}

/// Signs a HAP as hapsigner does: with `sign_code` (hapsigner's `signCode`, on by default),
/// a code-signing block (fs-verity of the HAP's code region and of each native library,
/// each signed) goes into the property block first; then the profile and the PKCS#7
/// signature over the content digest, which covers both.
pub fn sign_hap_with(
    hap: &[u8],
    key_pem: &str,
    chain_pem: &[u8],
    profile_p7b: &[u8],
    now: u64,
    sign_code: bool,
) -> Result<Vec<u8>, BundleError> {
    let unsigned = strip_block(hap)?;
    let z = signing::zip_layout(&unsigned).map_err(|e| BundleError::parse(e.to_string()))?;
    let key = pem::parse(key_pem)
        .map_err(|e| BundleError::new(code::VERIFY_PKCS7_FAIL, format!("key: {e}")))?;
    let chain = crate::verify::pem_certs(chain_pem);
    if chain.is_empty() {
        return Err(BundleError::new(
            code::VERIFY_PKCS7_FAIL,
            "no certificate in the --cert file",
        ));
    }
    let time = utc_time(now);
    let mut optional: Vec<(u32, Vec<u8>)> = Vec::new();
    if sign_code {
        let cs_err = |e: codesign::CodeSignError| {
            BundleError::new(code::CODE_SIGNATURE_FAILED, e.to_string())
        };
        let extra_attrs = owner_id(profile_p7b)
            .map(|o| vec![(oids::OWNER_ID, der::tlv(tag::UTF8_STRING, o.as_bytes()))])
            .unwrap_or_default();
        let opts = pkcs7::SignOptions {
            detached: true,
            extra_attrs,
        };
        let sign = |d: &[u8; codesign::FORMATTED_DIGEST_LEN]| {
            pkcs7::sign_with(d, key.contents(), &chain, &time, &opts).map_err(|e| {
                codesign::CodeSignError::new(codesign::cs::INVALID_SIGNATURE, e.to_string())
            })
        };
        let mut zv = crate::package::ZipView::open(&unsigned, &crate::package::Limits::default())?;
        let names: Vec<(String, u64)> = zv
            .entries
            .iter()
            .filter(|e| !e.is_dir && codesign::is_signed_lib(&e.name))
            .map(|e| (e.name.clone(), e.size))
            .collect();
        let mut libs = Vec::with_capacity(names.len());
        for (n, size) in names {
            let b = zv.read(&n, size)?;
            libs.push((n, b));
        }
        let region = codesign::code_region(&unsigned).map_err(cs_err)?;
        // The block heads (property, profile, signature), then the property value, whose
        // record header comes before the code-signing block.
        let csb_offset = z.cd_offset + signing::BLOCK_HEADER_LEN * 3 + codesign::RECORD_HEADER_LEN;
        let prop = codesign::build_property(&unsigned, region, csb_offset as u64, &libs, &sign)
            .map_err(cs_err)?;
        optional.push((BLOCK_PROPERTY, prop));
    }
    optional.push((BLOCK_PROFILE, profile_p7b.to_vec()));
    let values: Vec<&[u8]> = optional.iter().map(|(_, v)| v.as_slice()).collect();
    let digest = signing::content_digest(&unsigned, &z, z.cd_offset, &values);
    let content = signing::signed_content(&digest);
    let sig = pkcs7::sign(&content, key.contents(), &chain, &time)
        .map_err(|e| BundleError::new(code::VERIFY_PKCS7_FAIL, e.to_string()))?;
    let mut blocks: Vec<(u32, &[u8])> = optional.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    blocks.push((BLOCK_SIGNATURE, &sig));
    Ok(signing::insert_block(&unsigned, &z, &blocks))
}

/// Files of a package source, as (relative name, bytes).
pub type Files = Vec<(String, Vec<u8>)>;

/// Reads a package source directory (regular files only; symlinks are refused).
pub fn read_dir_files(dir: &Path) -> Result<Files, BundleError> {
    fn walk(base: &Path, dir: &Path, out: &mut Files, depth: usize) -> Result<(), BundleError> {
        if depth > 32 {
            return Err(BundleError::invalid_file("directory nesting too deep"));
        }
        let mut ents: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| {
                BundleError::new(code::FILE_PATH_INVALID, format!("{}: {e}", dir.display()))
            })?
            .filter_map(Result::ok)
            .collect();
        ents.sort_by_key(|e| e.file_name());
        for e in ents {
            let p = e.path();
            let ft = e.file_type().map_err(ierr)?;
            if ft.is_symlink() {
                return Err(BundleError::invalid_file(format!(
                    "{} is a symbolic link",
                    p.display()
                )));
            } else if ft.is_dir() {
                walk(base, &p, out, depth + 1)?;
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(base)
                    .map_err(ierr)?
                    .to_string_lossy()
                    .replace('\\', "/");
                let b = std::fs::read(&p).map_err(|e| ierr(format!("{}: {e}", p.display())))?;
                out.push((rel, b));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out, 0)?;
    Ok(out)
}

/// Builds an unsigned HAP from source files: `module.json5` (with `app` and `module`, or with
/// `module` only and an `app.json5` beside it) becomes `module.json`; `pack.info` is made;
/// every other file goes in as is.
pub fn pack(files: &Files) -> Result<Vec<u8>, BundleError> {
    let get = |n: &str| files.iter().find(|(k, _)| k == n).map(|(_, v)| v);
    let parse5 = |n: &str, b: &[u8]| -> Result<Value, BundleError> {
        let t =
            std::str::from_utf8(b).map_err(|_| BundleError::parse(format!("{n} is not UTF-8")))?;
        json5::from_str(t).map_err(|e| BundleError::parse(format!("{n}: {e}")))
    };
    let mut cfg = match (get("module.json5"), get("module.json")) {
        (Some(b), _) => parse5("module.json5", b)?,
        (None, Some(b)) => parse5("module.json", b)?,
        _ => return Err(BundleError::parse("no module.json5 in the directory")),
    };
    if cfg.get("app").is_none() {
        let app = get("app.json5").ok_or_else(|| {
            BundleError::parse("module.json5 has no \"app\" and there is no app.json5")
        })?;
        let a = parse5("app.json5", app)?;
        cfg["app"] = a.get("app").cloned().unwrap_or(a);
    }
    let module_json = serde_json::to_vec_pretty(&cfg).map_err(ierr)?;
    let info = model::parse_module_json(&module_json)?;
    let pack_info = json!({
        "summary": {
            "app": {
                "bundleName": info.app.bundle_name,
                "bundleType": "app",
                "version": {"code": info.app.version_code, "name": info.app.version_name},
            },
            "modules": [{
                "mainAbility": info.main_element,
                "deviceType": info.device_types,
                "distro": {"moduleType": info.module_type.as_str(), "moduleName": info.module_name, "deliveryWithInstall": true, "installationFree": false},
                "apiVersion": {"compatible": info.app.min_api_version, "target": info.app.target_api_version, "releaseType": info.app.api_release_type},
            }],
        },
        "packages": [{
            "name": format!("{}-default", info.module_name),
            "moduleType": info.module_type.as_str(),
            "deviceType": info.device_types,
            "deliveryWithInstall": true,
        }],
    });
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflate = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut put = |name: &str, b: &[u8]| -> Result<(), BundleError> {
        crate::package::check_entry_name(name)?;
        w.start_file(name, deflate).map_err(ierr)?;
        w.write_all(b).map_err(ierr)
    };
    put("module.json", &module_json)?;
    put("pack.info", &serde_json::to_vec(&pack_info).map_err(ierr)?)?;
    for (n, b) in files {
        if matches!(
            n.as_str(),
            "module.json5" | "module.json" | "app.json5" | "pack.info"
        ) {
            continue;
        }
        put(n, b)?;
    }
    Ok(w.finish().map_err(ierr)?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{Limits, open_hap};
    use crate::verify::{VerifyOptions, pem_certs, verify};
    use std::io::Write;

    pub(crate) fn src(bundle: &str, version: u32) -> Files {
        let m = format!(
            "// a comment, as JSON5 allows\n{{app: {{bundleName: '{bundle}', versionCode: {version}, versionName: '{version}.0', minAPIVersion: 12, targetAPIVersion: 12}},\n module: {{name: 'entry', type: 'entry', deviceTypes: ['default'], mainElement: 'EntryAbility', abilities: [{{name: 'EntryAbility', exported: true}}], requestPermissions: [{{name: 'ohos.permission.INTERNET'}}, {{name: 'ohos.permission.CAMERA', reason: '$string:r'}}],}}}}"
        );
        vec![
            ("module.json5".into(), m.into_bytes()),
            ("ets/modules.abc".into(), vec![1, 2, 3]),
            (
                "libs/arm64-v8a/libx.so".into(),
                vec![0x7f, b'E', b'L', b'F'],
            ),
        ]
    }

    #[test]
    fn utc_time_known_values() {
        assert_eq!(utc_time(0), "700101000000Z");
        assert_eq!(utc_time(1_655_792_632), "220621062352Z");
    }

    #[test]
    fn keygen_pack_sign_verify_and_tamper() {
        let now = 1_800_000_000;
        let spec = ProfileSpec {
            bundle_name: "com.example.myapp".into(),
            kind: "debug".into(),
            apl: "normal".into(),
            acls: vec![],
            device_ids: vec!["UDID1".into()],
            not_before: now - 10,
            not_after: now + 1000,
        };
        let ks = keygen(&spec, now).unwrap();
        let hap = pack(&src("com.example.myapp", 1)).unwrap();
        let signed = ks.sign(&hap, now).unwrap();
        let l = Limits::default();
        let h = open_hap(&signed, &l).unwrap();
        assert_eq!(h.info.app.bundle_name, "com.example.myapp");
        assert_eq!(h.abis, vec!["arm64-v8a"]);
        let opts = VerifyOptions {
            roots: pem_certs(ks.root_pem.as_bytes()),
            ignore_expiry: false,
            device_id: Some("UDID1".into()),
            now,
        };
        let r = verify(&h, &opts);
        r.result().unwrap();
        assert!(r.app_id.starts_with("com.example.myapp_"));
        // Another device, another clock, no roots: each check fails on its own.
        let r2 = verify(
            &h,
            &VerifyOptions {
                device_id: Some("X".into()),
                ..opts.clone()
            },
        );
        assert_eq!(r2.result().unwrap_err().code, code::APP_SOURCE_NOT_TRUSTED);
        let r3 = verify(
            &h,
            &VerifyOptions {
                roots: vec![],
                ..opts.clone()
            },
        );
        assert_eq!(r3.result().unwrap_err().code, code::VERIFY_PKCS7_FAIL);
        // Re-signing replaces the block.
        let again = ks.sign(&signed, now).unwrap();
        let ha = open_hap(&again, &l).unwrap();
        // Property (code signature), profile, signature.
        assert_eq!(ha.block.as_ref().unwrap().blocks.len(), 3);
        verify(&ha, &opts).result().unwrap();
        // One byte changed in the entries: digest fails.
        let mut bad = signed.clone();
        bad[40] ^= 1;
        if let Ok(h) = open_hap(&bad, &l) {
            assert_eq!(
                verify(&h, &opts).result().unwrap_err().code,
                code::BAD_DIGEST
            );
        }
        // Wrong bundle: profile for another name.
        let hap2 = pack(&src("com.example.other", 1)).unwrap();
        let s2 = ks.sign(&hap2, now).unwrap();
        let h2 = open_hap(&s2, &l).unwrap();
        assert_eq!(
            verify(&h2, &opts).result().unwrap_err().code,
            code::BUNDLE_NAME_MISMATCH
        );
    }

    fn spec(bundle: &str, now: u64) -> ProfileSpec {
        ProfileSpec {
            bundle_name: bundle.into(),
            kind: "debug".into(),
            apl: "normal".into(),
            acls: vec![],
            device_ids: vec![],
            not_before: now - 10,
            not_after: now + 1000,
        }
    }

    const MODULE: &str = r#"{"app":{"bundleName":"com.example.cs","versionCode":1},"module":{"name":"entry","type":"entry"}}"#;
    const LIB: &str = "libs/x86_64/libentry.so";

    /// A HAP as hapsigner aligns one for code signing: the library stored uncompressed and
    /// 4 KiB aligned first (the HAP's code region), then module.json, aligned too.
    fn aligned_hap(lib: &[u8]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(4096);
        w.start_file(LIB, stored).unwrap();
        w.write_all(lib).unwrap();
        w.start_file("module.json", stored).unwrap();
        w.write_all(MODULE.as_bytes()).unwrap();
        w.finish().unwrap().into_inner()
    }

    fn opts_for(ks: &KeySet, now: u64) -> VerifyOptions {
        VerifyOptions {
            roots: pem_certs(ks.root_pem.as_bytes()),
            now,
            ..VerifyOptions::default()
        }
    }

    #[test]
    fn signed_haps_carry_code_signatures_that_verify() {
        let now = 1_800_000_000;
        let ks = keygen(&spec("com.example.myapp", now), now).unwrap();
        let signed = ks
            .sign(&pack(&src("com.example.myapp", 1)).unwrap(), now)
            .unwrap();
        let h = open_hap(&signed, &Limits::default()).unwrap();
        let r = verify(&h, &opts_for(&ks, now));
        r.result().unwrap();
        let c = r.code_signature.as_ref().expect("a code signature");
        assert!(c.present);
        // pack deflates everything: the HAP's own region is empty, the library is signed.
        assert_eq!(c.hap.as_ref().map(|f| (f.ok, f.data_size)), Some((true, 0)));
        assert_eq!(c.libs.len(), 1);
        assert_eq!(c.libs[0].name, "libs/arm64-v8a/libx.so");
        assert!(c.libs[0].ok, "{:?}", c.libs[0]);
        assert_eq!(
            c.libs[0].digest,
            codesign::hex(&codesign::file_digest(&[0x7f, b'E', b'L', b'F']))
        );
        assert_eq!(c.owner_id.as_deref(), Some(codesign::DEBUG_OWNER_ID));

        // Without signCode: no code-signing block, the package signature still verifies.
        let plain = sign_hap_with(
            &signed,
            &ks.dev_key_pem,
            ks.dev_cert_pem.as_bytes(),
            &ks.profile_p7b,
            now,
            false,
        )
        .unwrap();
        let h = open_hap(&plain, &Limits::default()).unwrap();
        let r = verify(&h, &opts_for(&ks, now));
        r.result().unwrap();
        assert_eq!(r.code_signature.map(|c| c.present), Some(false));
    }

    #[test]
    fn an_aligned_hap_signs_its_code_region_with_a_stored_tree() {
        let now = 1_800_000_000;
        let ks = keygen(&spec("com.example.cs", now), now).unwrap();
        // Three blocks of library: a tree of one level.
        let lib: Vec<u8> = (0..10_000u32).map(|i| (i * 13) as u8).collect();
        let hap = aligned_hap(&lib);
        let region = codesign::code_region(&hap).unwrap();
        assert_eq!(
            region,
            4096 * 4,
            "local header, 3 data blocks, module.json's header"
        );
        let signed = ks.sign(&hap, now).unwrap();
        let h = open_hap(&signed, &Limits::default()).unwrap();
        let r = verify(&h, &opts_for(&ks, now));
        r.result().unwrap();
        let c = r.code_signature.unwrap();
        let f = c.hap.unwrap();
        assert!(f.ok && f.data_size == region as u64, "{f:?}");
        let b = h.block.as_ref().unwrap();
        let csb = codesign::find(&signed, b).unwrap().unwrap();
        let m = csb.hap.merkle.unwrap();
        assert_eq!(
            m.tree_offset % 4096,
            0,
            "the tree lies on a page of the file"
        );
        assert_eq!(m.tree_size, 4096);
        assert_eq!(
            csb.offset as usize,
            b.start + 48,
            "the record names the block's offset"
        );
    }

    /// `signed` with the entries and central directory of `other` (an unsigned zip of the
    /// same layout): a library changed after signing, the signing block kept.
    fn splice(signed: &[u8], other: &[u8]) -> Vec<u8> {
        let l = signing::zip_layout(other).unwrap();
        let ls = signing::zip_layout(signed).unwrap();
        let mut out = other[..l.cd_offset].to_vec();
        out.extend_from_slice(&signed[l.cd_offset..ls.cd_offset]);
        out.extend_from_slice(&other[l.cd_offset..l.eocd]);
        out.extend_from_slice(&signed[ls.eocd..]);
        assert_eq!(out.len(), signed.len());
        out
    }

    #[test]
    fn a_library_changed_after_signing_fails_naming_it() {
        let now = 1_800_000_000;
        let ks = keygen(&spec("com.example.cs", now), now).unwrap();
        let lib: Vec<u8> = (0..10_000u32).map(|i| (i * 13) as u8).collect();
        let signed = ks.sign(&aligned_hap(&lib), now).unwrap();
        let mut bad = lib.clone();
        bad[5000] ^= 1;
        let tampered = splice(&signed, &aligned_hap(&bad));
        let h = open_hap(&tampered, &Limits::default()).unwrap();
        let r = verify(&h, &opts_for(&ks, now));
        let e = r.result().unwrap_err();
        assert_eq!(e.code, code::CODE_SIGNATURE_FAILED, "{e}");
        assert!(e.reason.contains(LIB), "{e}");
        let c = r.code_signature.unwrap();
        assert!(!c.libs[0].ok);
        assert_eq!(c.libs[0].error_code, codesign::cs::INVALID_SIGNATURE);
        // The library lies in the HAP's code region too: its Merkle root changed.
        assert!(!c.hap.unwrap().ok);
        // The package digest fails as well; the report names what changed.
        assert!(
            r.checks
                .iter()
                .any(|c| c.name == "digest" && c.ok == Some(false))
        );
    }
}
