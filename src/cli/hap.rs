//! `oxh hap`: the developer's side of packages: pack, keygen, sign, verify, info, and the
//! device's trust roots. Everything but `trust` and the trust part of `verify` works offline.

use super::{Global, print_json};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use oxh_bundle::model::{HapInfo, Model};
use oxh_bundle::package::{Limits, open_hap};
use oxh_bundle::tools::{self, ProfileSpec};
use oxh_bundle::verify::{VerifyOptions, pem_certs};
use std::path::PathBuf;

/// `oxh hap ...`
#[derive(Debug, Subcommand)]
pub enum HapCmd {
    /// Build an unsigned HAP from a directory with module.json5 (+ files).
    Pack {
        /// Source directory.
        dir: PathBuf,
        /// Output HAP.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
    /// Create a dev root CA, a signing key + certificate and a signed debug profile.
    Keygen {
        /// The bundle the profile is for.
        #[arg(long)]
        bundle: String,
        /// Output directory (root.pem, root.key, dev.key, dev.pem, dev.p7b).
        #[arg(long)]
        out: PathBuf,
        /// A device UDID the debug profile allows (repeatable); default: this device's.
        #[arg(long = "device-id")]
        device_ids: Vec<String>,
        /// APL in the profile: normal, system_basic, system_core.
        #[arg(long, default_value = "normal")]
        apl: String,
        /// A permission the profile allows above the APL (repeatable).
        #[arg(long = "acl")]
        acls: Vec<String>,
        /// Make a release profile (no device list) instead of a debug one.
        #[arg(long)]
        release: bool,
        /// Profile validity in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Issue under an existing root: DIR/root.pem and DIR/root.key (e.g. the dev root
        /// `oxh sim` devices trust) instead of a new one.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Sign a HAP (replaces an existing signature).
    Sign {
        /// Input HAP.
        hap: PathBuf,
        /// Signing key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// Signing certificate (PEM; more certificates after it are embedded as the chain).
        #[arg(long)]
        cert: PathBuf,
        /// Signed profile (.p7b).
        #[arg(long)]
        profile: PathBuf,
        /// Output HAP.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// hapsigner's signCode: 1 writes the code signature (fs-verity of the HAP's code
        /// and of each native library, signed), 0 leaves it out.
        #[arg(long = "sign-code", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
        sign_code: u8,
    },
    /// Verify a HAP's signature, each check apart (an .app: each HAP inside, by its own
    /// signature or, unsigned, by the pack's).
    Verify {
        /// The HAP or .app.
        hap: PathBuf,
        /// Extra trust root (PEM), besides the device's.
        #[arg(long)]
        root: Vec<PathBuf>,
        /// Do not ask the device for its trust roots.
        #[arg(long)]
        offline: bool,
        /// Accept an expired profile.
        #[arg(long)]
        ignore_expiry: bool,
    },
    /// Bundle, version, modules, abilities, permissions, signer.
    Info {
        /// A HAP or .app.
        file: PathBuf,
    },
    /// The device's trust roots.
    #[command(subcommand)]
    Trust(TrustCmd),
}

/// One HAP as `oxh hap info --json` prints it: the module's [`HapInfo`] with module.json's
/// names (bundleName, versionCode, moduleName, abilities[].name, ...), its native ABIs and
/// who signed it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct HapInfoView {
    /// The parsed module.json / config.json.
    #[serde(flatten)]
    info: HapInfo,
    /// `libs/<abi>/` dirs.
    abis: Vec<String>,
    /// Has a signing block.
    signed: bool,
    /// Signer's subject.
    signer: String,
    /// The signing profile.
    profile: Option<oxh_bundle::verify::Profile>,
}

/// `oxh hap trust ...`
#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// Add a root certificate (PEM).
    Add {
        /// PEM file.
        pem: PathBuf,
    },
    /// List trust roots.
    Ls,
    /// Remove a trust root by name (as `ls` shows it).
    Rm {
        /// Name.
        name: String,
    },
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One line on a package's code signature: absent, unreadable, or what it covers and how
/// much of it verified.
fn code_signature_summary(c: &oxh_bundle::codesign::CodeSignReport) -> String {
    if !c.present {
        return "none".into();
    }
    if let Some(e) = &c.error {
        return format!("unreadable: {e}");
    }
    let libs_ok = c.libs.iter().filter(|l| l.ok).count();
    let hap = c
        .hap
        .as_ref()
        .map(|h| {
            format!(
                "HAP code region {} bytes {}",
                h.data_size,
                if h.ok { "verified" } else { "FAILED" }
            )
        })
        .unwrap_or_default();
    format!(
        "{hap}, {libs_ok} of {} native libraries verified{}",
        c.libs.len(),
        if c.signer.is_empty() {
            String::new()
        } else {
            format!(", signed by \"{}\"", c.signer)
        }
    )
}

/// Runs `oxh hap ...`.
pub async fn run(g: &Global, c: &HapCmd) -> Result<i32> {
    match c {
        HapCmd::Pack { dir, out } => {
            let files = tools::read_dir_files(dir)?;
            let hap = tools::pack(&files)?;
            std::fs::write(out, &hap).with_context(|| format!("cannot write {}", out.display()))?;
            let h = open_hap(&hap, &Limits::default())?;
            println!(
                "packed {} {} module {} ({} bytes) -> {}",
                h.info.app.bundle_name,
                h.info.app.version_code,
                h.info.module_name,
                hap.len(),
                out.display()
            );
            Ok(0)
        }
        HapCmd::Keygen {
            bundle,
            out,
            device_ids,
            apl,
            acls,
            release,
            days,
            root,
        } => {
            let mut ids = device_ids.clone();
            if ids.is_empty() && !release {
                match g.connect().await {
                    Ok(dev) => {
                        let l = dev.device_manager().local_device_info().await?;
                        ids.push(l.udid.clone());
                    }
                    // A debug profile that lists no device installs nowhere: say so and
                    // write nothing.
                    Err(e) => bail!(
                        "no device is reachable to read its udid for the debug profile ({e:#}); \
                         start one (`oxh up`), name the device with --device-id UDID, or make a \
                         --release profile"
                    ),
                }
            }
            let t = now();
            let spec = ProfileSpec {
                bundle_name: bundle.clone(),
                kind: if *release { "release" } else { "debug" }.into(),
                apl: apl.clone(),
                acls: acls.clone(),
                device_ids: ids,
                not_before: t.saturating_sub(3600),
                not_after: t + days * 86_400,
            };
            let ks = match root {
                Some(r) => {
                    let cert = std::fs::read_to_string(r.join("root.pem"))
                        .with_context(|| format!("cannot read {}/root.pem", r.display()))?;
                    let key = std::fs::read_to_string(r.join("root.key"))
                        .with_context(|| format!("cannot read {}/root.key", r.display()))?;
                    tools::keygen_under(&spec, t, &cert, &key)?
                }
                None => tools::keygen(&spec, t)?,
            };
            std::fs::create_dir_all(out)?;
            // Private keys are secrets (0600 from the start); certificates and the profile
            // are public.
            let w = |n: &str, b: &[u8], secret: bool| -> Result<()> {
                let p = out.join(n);
                if secret {
                    oxh_kal::write_secret(&p, b)
                } else {
                    oxh_kal::write_atomic(&p, b, 0o644)
                }
                .with_context(|| format!("cannot write {}", p.display()))
            };
            w("root.pem", ks.root_pem.as_bytes(), false)?;
            w("root.key", ks.root_key_pem.as_bytes(), true)?;
            w("dev.key", ks.dev_key_pem.as_bytes(), true)?;
            w("dev.pem", ks.dev_cert_pem.as_bytes(), false)?;
            w("dev.p7b", &ks.profile_p7b, false)?;
            println!(
                "keys for {bundle} in {}: root.pem (dev root CA), root.key, dev.key, dev.pem, dev.p7b ({} profile)",
                out.display(),
                spec.kind
            );
            Ok(0)
        }
        HapCmd::Sign {
            hap,
            key,
            cert,
            profile,
            out,
            sign_code,
        } => {
            let data =
                std::fs::read(hap).with_context(|| format!("cannot read {}", hap.display()))?;
            let key = std::fs::read_to_string(key)?;
            let cert = std::fs::read(cert)?;
            let prof = std::fs::read(profile)?;
            let signed = tools::sign_hap_with(&data, &key, &cert, &prof, now(), *sign_code == 1)?;
            std::fs::write(out, &signed)?;
            println!("signed -> {} ({} bytes)", out.display(), signed.len());
            Ok(0)
        }
        HapCmd::Verify {
            hap,
            root,
            offline,
            ignore_expiry,
        } => {
            let data =
                std::fs::read(hap).with_context(|| format!("cannot read {}", hap.display()))?;
            let mut roots = Vec::new();
            for r in root {
                roots.extend(pem_certs(&std::fs::read(r)?));
            }
            let mut device_id = None;
            if !offline && let Ok(dev) = g.connect().await {
                for t in dev.bundle().trust_list().await? {
                    roots.extend(pem_certs(t.pem.as_bytes()));
                }
                if let Ok(l) = dev.device_manager().local_device_info().await {
                    device_id = Some(l.udid.clone());
                }
            }
            let opts = VerifyOptions {
                roots,
                ignore_expiry: *ignore_expiry,
                device_id,
                now: now(),
            };
            let haps = match oxh_bundle::verify::verify_package(&data, &Limits::default(), &opts) {
                Ok(h) => h,
                Err(e) => {
                    println!("{e}");
                    return Ok(1);
                }
            };
            let results: Vec<_> = haps.iter().map(|h| h.report.result()).collect();
            let ok = results.iter().all(|r| r.is_ok());
            if g.json {
                let first_err = results
                    .iter()
                    .find_map(|r| r.as_ref().err().map(|e| e.code));
                let mut v = serde_json::json!({
                    "ok": ok,
                    "code": first_err,
                    "report": haps.first().map(|h| h.pack.as_ref().unwrap_or(&h.report)),
                });
                // An .app: each HAP inside, with the report that decides it.
                if haps.iter().any(|h| !h.name.is_empty()) {
                    v["haps"] = haps
                        .iter()
                        .zip(&results)
                        .map(|(h, r)| {
                            serde_json::json!({
                                "name": h.name,
                                "ok": r.is_ok(),
                                "signedByPack": !h.report.signed || h.pack.as_ref() == Some(&h.report),
                                "report": h.report,
                            })
                        })
                        .collect();
                }
                print_json(&v)?;
                return Ok(if ok { 0 } else { 1 });
            }
            for (h, res) in haps.iter().zip(&results) {
                let r = &h.report;
                if !h.name.is_empty() {
                    let by = if h.pack.as_ref() == Some(r) {
                        "the pack's signature"
                    } else {
                        "its own signature"
                    };
                    println!("{} (judged by {by}):", h.name);
                }
                if !r.signed {
                    println!("unsigned: no signing block");
                } else {
                    println!(
                        "signing block v{} ({})",
                        r.block_version,
                        r.blocks.join(", ")
                    );
                }
                for c in &r.checks {
                    let mark = match c.ok {
                        Some(true) => "ok  ",
                        Some(false) => "FAIL",
                        None => "--  ",
                    };
                    println!("{mark} {:<20} {}", c.name, c.detail);
                }
                if !r.app_id.is_empty() {
                    println!("appId: {}", r.app_id);
                }
                if let Some(c) = &r.code_signature {
                    println!("code signature: {}", code_signature_summary(c));
                }
                match &res {
                    Ok(()) => println!("verified"),
                    Err(e) => println!("not verified: {e}"),
                }
            }
            Ok(if ok { 0 } else { 1 })
        }
        HapCmd::Info { file } => {
            let data =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let l = Limits::default();
            let haps = oxh_bundle::verify::verify_package(&data, &l, &VerifyOptions::default())?;
            let mut out = Vec::new();
            for p in &haps {
                let h = open_hap(&p.data, &l)?;
                out.push(HapInfoView {
                    info: h.info,
                    abis: h.abis,
                    signed: p.report.signed,
                    signer: p.report.signer.clone(),
                    profile: p.report.profile.clone(),
                });
            }
            if g.json {
                print_json(&out)?;
            } else {
                for v in out {
                    let (a, m) = (&v.info.app, &v.info);
                    let names = |l: &mut dyn Iterator<Item = &str>| -> String {
                        l.collect::<Vec<_>>().join(", ")
                    };
                    println!("bundle:      {}", a.bundle_name);
                    println!("version:     {} ({})", a.version_code, a.version_name);
                    println!(
                        "model:       {}",
                        match m.model {
                            Model::Stage => "stage",
                            Model::Fa => "fa",
                        }
                    );
                    println!(
                        "module:      {} ({})",
                        m.module_name,
                        m.module_type.as_str()
                    );
                    println!(
                        "abilities:   {}",
                        names(&mut m.abilities.iter().map(|x| x.name.as_str()))
                    );
                    println!(
                        "extensions:  {}",
                        names(&mut m.extension_abilities.iter().map(|x| x.name.as_str()))
                    );
                    println!(
                        "permissions: {}",
                        names(&mut m.request_permissions.iter().map(|x| x.name.as_str()))
                    );
                    println!(
                        "signer:      {}",
                        if v.signed {
                            v.signer.as_str()
                        } else {
                            "(unsigned)"
                        }
                    );
                }
            }
            Ok(0)
        }
        HapCmd::Trust(t) => {
            let dev = g.connect().await?;
            let b = dev.bundle();
            match t {
                TrustCmd::Add { pem } => {
                    let text = std::fs::read_to_string(pem)
                        .with_context(|| format!("cannot read {}", pem.display()))?;
                    let name = b.trust_add(&text).await?;
                    println!("trust root added: {name}");
                }
                TrustCmd::Ls => {
                    let l = b.trust_list().await?;
                    if g.json {
                        print_json(&l)?;
                    } else {
                        for r in l {
                            println!("{}  {}", r.name, r.subject);
                        }
                    }
                }
                TrustCmd::Rm { name } => {
                    if name.is_empty() {
                        bail!("name a trust root");
                    }
                    b.trust_remove(name).await?;
                    println!("trust root removed: {name}");
                }
            }
            Ok(0)
        }
    }
}
