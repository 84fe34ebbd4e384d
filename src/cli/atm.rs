//! `oxh atm`: access tokens and permissions (OpenHarmony's `atm` tool and privacy records).

use super::{Global, print_json};
use anyhow::Result;
use clap::{Args, Subcommand};
use oxh_atm::api::{AtmProxy, PermsArgs, TokenTarget, UsageArgs};
use oxh_atm::definitions::{Apl, GrantMode};
use oxh_atm::rules::{DEFAULT_USER_ID, flag};

/// What `oxh atm grant` and `oxh atm revoke` take.
#[derive(Debug, Args)]
pub struct PermChange {
    /// Bundle name or token id.
    bundle: String,
    /// Permission (`ohos.permission.` may be left out).
    permission: String,
    /// USER_FIXED instead of USER_SET.
    #[arg(long)]
    fixed: bool,
    /// User of the bundle.
    #[arg(long, default_value_t = DEFAULT_USER_ID)]
    user: i32,
}

/// `oxh atm` subcommands.
#[derive(Debug, Subcommand)]
pub enum AtmCmd {
    /// The permission table (OpenHarmony's 1,134 definitions), optionally filtered.
    Perms {
        /// Only this grant mode: system_grant, user_grant, manual_settings.
        #[arg(long, value_parser = parse_grant_mode)]
        grant_mode: Option<GrantMode>,
        /// Only this availableLevel: normal, system_basic, system_core.
        #[arg(long, value_parser = parse_apl)]
        level: Option<Apl>,
    },
    /// Every token: id (hex), type, APL, bundle or process, granted/requested.
    Tokens,
    /// A token's permissions with their states and flags.
    Show {
        /// Token id (decimal or 0x hex) or bundle name.
        token: String,
        /// User of the bundle.
        #[arg(long, default_value_t = DEFAULT_USER_ID)]
        user: i32,
    },
    /// Prints GRANTED or DENIED (exit status 0 or 1).
    Check {
        /// Token id (decimal or 0x hex) or bundle name.
        token: String,
        /// Permission (`ohos.permission.` may be left out).
        permission: String,
        /// User of the bundle.
        #[arg(long, default_value_t = DEFAULT_USER_ID)]
        user: i32,
    },
    /// Grants a user_grant permission an app requested.
    Grant(PermChange),
    /// Revokes a user_grant permission; with --fixed the app is not asked again.
    Revoke(PermChange),
    /// Who used which user_grant permission, when, how often it passed and failed.
    Usage {
        /// Only this bundle (or token id).
        #[arg(long)]
        bundle: Option<String>,
        /// Only this permission.
        #[arg(long)]
        permission: Option<String>,
        /// Remove the records of --bundle instead of listing them.
        #[arg(long, requires = "bundle")]
        remove: bool,
        /// User of the bundle.
        #[arg(long, default_value_t = DEFAULT_USER_ID)]
        user: i32,
    },
}

fn parse_grant_mode(s: &str) -> Result<GrantMode, String> {
    s.parse()
}

fn parse_apl(s: &str) -> Result<Apl, String> {
    s.parse()
}

/// `CAMERA` → `ohos.permission.CAMERA`; full names pass through.
fn full_name(p: &str) -> String {
    if p.contains('.') {
        p.to_string()
    } else {
        format!("ohos.permission.{p}")
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Runs `oxh atm ...`; service errors print the error and exit 1.
pub async fn run(g: &Global, cmd: &AtmCmd) -> Result<i32> {
    let dev = g.connect().await?;
    let atm = dev.atm();
    let r = run_with(g, &atm, cmd).await;
    match r {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("oxh atm: {e}");
            Ok(1)
        }
    }
}

async fn run_with(g: &Global, atm: &AtmProxy<'_>, cmd: &AtmCmd) -> Result<i32> {
    match cmd {
        AtmCmd::Perms { grant_mode, level } => {
            let list = atm
                .permissions(&PermsArgs {
                    grant_mode: *grant_mode,
                    level: *level,
                })
                .await?;
            if g.json {
                print_json(&list)?;
                return Ok(0);
            }
            println!(
                "{:<58} {:<15} {:<12} {:<17} ACL DISTRIBUTED",
                "NAME", "GRANT MODE", "LEVEL", "TYPE"
            );
            for p in &list {
                println!(
                    "{:<58} {:<15} {:<12} {:<17} {:<3} {}",
                    p.name,
                    p.grant_mode.as_str(),
                    p.available_level.as_str(),
                    p.available_type.as_str(),
                    if p.provision_enable { "yes" } else { "no" },
                    if p.distributed_scene_enable {
                        "yes"
                    } else {
                        "no"
                    }
                );
            }
            println!("{} permissions", list.len());
            Ok(0)
        }
        AtmCmd::Tokens => {
            let list = atm.tokens().await?;
            if g.json {
                print_json(&list)?;
                return Ok(0);
            }
            println!(
                "{:<10} {:<7} {:<12} {:>8} {:>9}  NAME",
                "TOKEN ID", "TYPE", "APL", "UID", "GRANTED"
            );
            for t in &list {
                let uid = t.uid.map(|u| u.to_string()).unwrap_or_else(|| "-".into());
                let mut name = t.name.clone();
                if let (Some(user), Some(inst)) = (t.user_id, t.inst_index) {
                    name = if inst == 0 {
                        format!("{name} (user {user})")
                    } else {
                        format!("{name} (user {user}, instance {inst})")
                    };
                }
                if t.token_attr & 1 != 0 {
                    name.push_str(" [system app]");
                }
                if let Some(udid) = &t.remote_udid {
                    name.push_str(&format!(
                        " [remote: device {}...]",
                        udid.get(..12).unwrap_or(udid)
                    ));
                }
                println!(
                    "{:#010x} {:<7} {:<12} {:>8} {:>9}  {name}",
                    t.token_id,
                    t.token_type.as_str(),
                    t.apl.as_str(),
                    uid,
                    format!("{}/{}", t.granted, t.requested),
                );
            }
            Ok(0)
        }
        AtmCmd::Show { token, user } => {
            let d = atm.token(TokenTarget::parse(token, *user)).await?;
            if g.json {
                print_json(&d)?;
                return Ok(0);
            }
            println!(
                "{:#010x} {} {} {}",
                d.info.token_id,
                d.info.token_type.as_str(),
                d.info.apl.as_str(),
                d.info.name
            );
            for p in &d.permissions {
                println!(
                    "  {:<58} {:<8} {}",
                    p.permission,
                    if p.granted { "GRANTED" } else { "DENIED" },
                    flag::names(p.flags)
                );
            }
            Ok(0)
        }
        AtmCmd::Check {
            token,
            permission,
            user,
        } => {
            let r = atm
                .check(TokenTarget::parse(token, *user), &full_name(permission))
                .await?;
            if g.json {
                print_json(&r)?;
            } else if r.granted {
                println!("GRANTED");
            } else if r.requested {
                println!("DENIED ({})", flag::names(r.flags));
            } else {
                println!("DENIED (not requested)");
            }
            Ok(if r.granted { 0 } else { 1 })
        }
        AtmCmd::Grant(PermChange {
            bundle,
            permission,
            fixed,
            user,
        })
        | AtmCmd::Revoke(PermChange {
            bundle,
            permission,
            fixed,
            user,
        }) => {
            let grant = matches!(cmd, AtmCmd::Grant(_));
            let f = if *fixed {
                flag::USER_FIXED
            } else {
                flag::USER_SET
            };
            let target = TokenTarget::parse(bundle, *user);
            let p = full_name(permission);
            if grant {
                atm.grant(target.clone(), &p, f).await?;
                println!("granted {p} to {target} ({})", flag::names(f));
            } else {
                atm.revoke(target.clone(), &p, f).await?;
                println!("revoked {p} from {target} ({})", flag::names(f));
            }
            Ok(0)
        }
        AtmCmd::Usage {
            bundle,
            permission,
            remove,
            user,
        } => {
            let target = bundle.as_deref().map(|b| TokenTarget::parse(b, *user));
            if *remove {
                if let Some(t) = target {
                    let n = atm.remove_usage(t.clone()).await?;
                    println!("removed {n} usage records of {t}");
                }
                return Ok(0);
            }
            let list = atm
                .usage(&UsageArgs {
                    target,
                    permission: permission.as_deref().map(full_name),
                })
                .await?;
            if g.json {
                print_json(&list)?;
                return Ok(0);
            }
            println!(
                "{:<10} {:<28} {:<44} {:>7} {:>7}  {:<19}  LAST (UTC)",
                "TOKEN ID", "NAME", "PERMISSION", "SUCCESS", "FAIL", "FIRST (UTC)"
            );
            for u in &list {
                println!(
                    "{:#010x} {:<28} {:<44} {:>7} {:>7}  {}  {}",
                    u.token_id,
                    u.name,
                    u.permission,
                    u.success_count,
                    u.fail_count,
                    utc(u.first_ms),
                    utc(u.last_ms)
                );
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_permission_names_and_utc_times() {
        assert_eq!(full_name("CAMERA"), "ohos.permission.CAMERA");
        assert_eq!(full_name("ohos.permission.DUMP"), "ohos.permission.DUMP");
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
