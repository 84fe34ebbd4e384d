//! The parameter service as system ability [`crate::api::SA_ID`].
//!
//! Every method is registered with [`Method::open`]: who may set a parameter depends on its
//! name, which samgr's gate cannot see, so the access table ([`crate::rules::ACCESS_RULES`])
//! is applied here, with the caller's token type from kernel credentials.

use crate::api::{self, DumpArgs, GetArgs, ListArgs, SetArgs, WaitArgs};
use crate::service::ParamService;
use bytes::Bytes;
use oxh_ipc::{ConnHandle, RemoteError, decode, encode};
use oxh_samgr::{CallContext, Method, SystemAbility};
use std::time::Duration;

const METHODS: &[Method] = &[
    Method::open(api::GET, "GetParameter"),
    Method::open(api::SET, "SetParameter"),
    Method::open(api::LIST, "ListParameters"),
    Method::open(api::WAIT, "WaitParameter"),
    Method::open(api::DUMP, "DumpParameters"),
];

#[async_trait::async_trait]
impl SystemAbility for ParamService {
    fn methods(&self) -> &'static [Method] {
        METHODS
    }

    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        let token = ctx.caller().token_type;
        match code {
            api::GET => {
                let a: GetArgs = decode(&data)?;
                Ok(encode(&self.get(token, &a.key)?))
            }
            api::SET => {
                let a: SetArgs = decode(&data)?;
                let r = self.set(token, &a.key, &a.value).await;
                if let Err(e) = &r {
                    tracing::info!(
                        tag = "param",
                        public_pid = ctx.caller().pid,
                        public_code = e.code(),
                        "{e}"
                    );
                }
                r?;
                Ok(encode(&()))
            }
            api::LIST => {
                let a: ListArgs = decode(&data)?;
                Ok(encode(&self.list(token, &a.prefix, a.recursive)?))
            }
            api::WAIT => {
                let a: WaitArgs = decode(&data)?;
                // One of the connection's wait slots for as long as the wait lasts.
                let _slot = ctx.conn.hold_wait("param")?;
                let v = self
                    .wait(
                        token,
                        &a.key,
                        a.value.as_deref(),
                        Duration::from_millis(a.timeout_ms),
                    )
                    .await?;
                Ok(encode(&v))
            }
            api::DUMP => {
                let a: DumpArgs = decode(&data)?;
                Ok(encode(&self.dump_text(a.verbose)))
            }
            _ => Err(RemoteError::invalid(format!(
                "ParamService has no method {code}"
            ))),
        }
    }

    fn dump(&self, args: &[String]) -> String {
        let verbose = args
            .iter()
            .any(|a| matches!(a.as_str(), "-v" | "--verbose" | "verbose"));
        self.dump_text(verbose)
    }

    /// Nothing to forget: the service keeps no per-connection state. A pending WAIT is a call
    /// future that the IPC layer cancels when its client dies; cancelling it drops its waiter.
    fn on_client_died(&self, _conn: &ConnHandle) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxh_ipc::{Caller, TokenType};
    use std::sync::Arc;

    fn ctx(t: TokenType) -> CallContext {
        let (conn, _rx) = ConnHandle::detached(Caller {
            pid: 1,
            uid: 0,
            gid: 0,
            token_id: 0,
            token_type: t,
            process_name: "test".into(),
        });
        CallContext { conn }
    }

    async fn call<A: serde::Serialize>(
        sa: &Arc<ParamService>,
        t: TokenType,
        code: u32,
        args: &A,
    ) -> Result<Vec<u8>, RemoteError> {
        sa.call(ctx(t), code, Bytes::from(encode(args))).await
    }

    #[tokio::test]
    async fn methods_apply_the_callers_token() {
        let dir = tempfile::tempdir().unwrap();
        let sa = ParamService::open(dir.path()).unwrap();
        let set = |k: &str, v: &str| SetArgs {
            key: k.into(),
            value: v.into(),
        };
        call(&sa, TokenType::Shell, api::SET, &set("persist.a", "1"))
            .await
            .unwrap();
        let e = call(&sa, TokenType::Invalid, api::SET, &set("persist.a", "2"))
            .await
            .unwrap_err();
        assert_eq!(e.code, crate::code::PERMISSION_DENIED);
        assert!(e.message.contains("persist.a"), "{}", e.message);
        let e = call(&sa, TokenType::Shell, api::SET, &set("ohos.x", "2"))
            .await
            .unwrap_err();
        assert_eq!(e.code, crate::code::PERMISSION_DENIED);

        let got = call(
            &sa,
            TokenType::Invalid,
            api::GET,
            &GetArgs {
                key: "persist.a".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(decode::<String>(&got).unwrap(), "1");
        let e = call(
            &sa,
            TokenType::Shell,
            api::GET,
            &GetArgs { key: "nope".into() },
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, crate::code::NOT_FOUND);

        let listed = call(
            &sa,
            TokenType::Hap,
            api::LIST,
            &ListArgs {
                prefix: "persist".into(),
                recursive: true,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            decode::<Vec<(String, String)>>(&listed).unwrap(),
            vec![("persist.a".to_owned(), "1".to_owned())]
        );

        let waited = call(
            &sa,
            TokenType::Shell,
            api::WAIT,
            &WaitArgs {
                key: "persist.a".into(),
                value: Some("1".into()),
                timeout_ms: 0,
            },
        )
        .await
        .unwrap();
        assert_eq!(decode::<String>(&waited).unwrap(), "1");

        let dump = call(
            &sa,
            TokenType::Shell,
            api::DUMP,
            &DumpArgs { verbose: true },
        )
        .await
        .unwrap();
        let text = decode::<String>(&dump).unwrap();
        assert!(
            text.contains("parameters: 1 (persist 1, const 0, other 0)"),
            "{text}"
        );
        assert!(text.contains("persist.a = 1"), "{text}");
        assert!(text.contains("persist.db"), "{text}");
        assert!(!sa.dump(&[]).contains("persist.a = 1"));

        let e = sa
            .call(ctx(TokenType::Shell), api::SET, Bytes::from_static(&[0xff]))
            .await
            .unwrap_err();
        assert_eq!(e.code, 401);
        assert_eq!(sa.methods().len(), 5);
        assert!(
            sa.methods()
                .iter()
                .all(|m| m.permission.is_none() && !m.system_only)
        );
    }
}
