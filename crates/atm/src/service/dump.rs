//! Listings (the permission table, tokens, one token's states) and the `hidumper` dump.

use super::AccessTokenManager;
use crate::api::{PermissionInfo, PermsArgs, TokenDetail, TokenInfo, TokenTarget};
use crate::definitions;
use crate::error::AtmError;
use crate::rules::flag;
use oxh_ipc::TokenType;
use std::sync::atomic::Ordering;

impl AccessTokenManager {
    /// The permission table, filtered.
    pub fn permissions(args: &PermsArgs) -> Vec<PermissionInfo> {
        definitions::all()
            .iter()
            .filter(|d| args.grant_mode.is_none_or(|m| d.grant_mode == m))
            .filter(|d| args.level.is_none_or(|l| d.available_level == l))
            .map(PermissionInfo::from)
            .collect()
    }

    /// Every token, sorted by id.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        let mut v: Vec<TokenInfo> = self.read().tokens.values().map(|t| t.info()).collect();
        v.sort_by_key(|t| t.token_id);
        v
    }

    /// A token with the state of each of its permissions.
    pub fn token_detail(&self, target: &TokenTarget) -> Result<TokenDetail, AtmError> {
        let t = self.token(self.resolve_target(target)?)?;
        Ok(TokenDetail {
            info: t.info(),
            permissions: t.statuses(),
        })
    }

    /// The service's state for `hidumper -s 3503`; `verbose` lists every token's permissions.
    pub fn dump_text(&self, verbose: bool) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let tokens = self.tokens();
        let _ = writeln!(s, "AccessTokenManagerService");
        let _ = writeln!(s, "  store: {}", self.db_path.display());
        let _ = writeln!(s, "  permission definitions: {}", definitions::count());
        let count = |t: TokenType| tokens.iter().filter(|i| i.token_type == t).count();
        let _ = writeln!(
            s,
            "  tokens: {} (hap {}, native {}, shell {})",
            tokens.len(),
            count(TokenType::Hap),
            count(TokenType::Native),
            count(TokenType::Shell)
        );
        let _ = writeln!(
            s,
            "  checks: {} verified, {} denied",
            self.stats.verified.load(Ordering::Relaxed),
            self.stats.denied.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "  usage records: {} (max {})",
            self.book().len(),
            self.config.usage_max_records
        );
        for t in &tokens {
            let _ = writeln!(
                s,
                "  {:#010x} {:<6} {:<12} {} ({}/{} granted)",
                t.token_id,
                t.token_type.as_str(),
                t.apl.as_str(),
                t.name,
                t.granted,
                t.requested
            );
            if verbose && let Ok(d) = self.token_detail(&TokenTarget::Id(t.token_id)) {
                for p in d.permissions {
                    let _ = writeln!(
                        s,
                        "      {} {} {}",
                        p.permission,
                        if p.granted { "GRANTED" } else { "DENIED" },
                        flag::names(p.flags)
                    );
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::Apl;
    use crate::service::tests::CAMERA;

    #[test]
    fn permissions_filter() {
        let all = AccessTokenManager::permissions(&PermsArgs::default());
        assert_eq!(all.len(), 1134);
        let ug = AccessTokenManager::permissions(&PermsArgs {
            grant_mode: Some(definitions::GrantMode::UserGrant),
            level: Some(Apl::Normal),
        });
        assert!(ug.iter().any(|p| p.name == CAMERA));
        assert!(
            ug.iter()
                .all(|p| p.grant_mode == definitions::GrantMode::UserGrant
                    && p.available_level == Apl::Normal)
        );
    }
}
