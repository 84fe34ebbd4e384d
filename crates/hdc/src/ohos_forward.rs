//! OpenHarmony's port forwarding (developtools_hdc's `forward.cpp`, `daemon_forward.cpp`) for
//! OpenHarmony's hosts, on the device. One rule is one channel; each connection on the
//! listening side is a *context* in it, named by a u32 the listening side picks (big-endian
//! at the front of every payload but INIT's):
//!
//! ```text
//! fport tcp:L tcp:R (host listens):   WAKEUP → CHECK[id0,8×0,"tcp:R\0"] → CHECK_RESULT[id0,0]
//!   per accepted connection:          ACTIVE_SLAVE[id,8×0,"tcp:R\0"] → ACTIVE_MASTER[id] | FREE_CONTEXT[id]
//! rport tcp:R tcp:L (device listens): INIT["tcp:R tcp:L\0"] → WAKEUP, CHECK[id0,8×0,"tcp:L\0"]
//!                                     → CHECK_RESULT → ECHO "Forwardport result:OK", SUCCESS "0|tcp:R tcp:L\0"
//!   per accepted connection:          ACTIVE_SLAVE[id,8×0,"tcp:L\0"] → ACTIVE_MASTER[id] | FREE_CONTEXT[id]
//! then, both:                         DATA[id,bytes] both ways; FREE_CONTEXT[id] either way ends one;
//!                                     CHANNEL_CLOSE ends the rule
//! ```
//!
//! The device's half runs on our own handlers ([`crate::device`]) through the in-process
//! session: a context the host activates is a [`Request::Connect`] channel (the device
//! connects to 127.0.0.1:R), an rport rule a [`Request::ReverseListen`] whose connections come
//! back as Connect channels. Their `host_port` is only a tag here, naming the rule in
//! [`Forwards`]. Only `tcp:` nodes are served on the device. Any other node type gets
//! OpenHarmony's "Forward parament failed".
//!
//! OpenHarmony's wire has no flow control. Bytes from the host wait for the device's
//! connection in a bounded buffer: [`MAX_FORWARD_CONTEXT_BUFFERED`] per context and
//! [`MAX_FORWARD_SESSION_BUFFERED`] per session. When the buffer is full the host's packets
//! wait, which holds the session's reader. A context that stays full for
//! [`FORWARD_STALL_TIMEOUT`] is freed, so one stuck connection cannot hold a session for good.
//!
//! Two differences from hdcd. The device answers ACTIVE_MASTER as soon as our connect
//! starts, and a failed connect then ends with FREE_CONTEXT. hdcd answers only after the
//! connect is done; the host's user sees the same closed connection either way. FREE_CONTEXT
//! or DATA for an unknown id is ignored. hdcd ends the whole rule there, but a FREE_CONTEXT
//! crossing one of ours is normal.

use crate::limits::{
    FORWARD_STALL_TIMEOUT, MAX_FORWARD_CONTEXT_BUFFERED, MAX_FORWARD_CONTEXTS,
    MAX_FORWARD_SESSION_BUFFERED,
};
use crate::ohos::{self, echo, packet};
use crate::ohos_auth::CMD_KERNEL_CHANNEL_CLOSE;
use crate::proto::{Ctrl, Exit, Request};
use crate::session::{Channel, Event, Incoming, Sender, Session};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// CMD_FORWARD_INIT: `"<this side's node> <the other side's node>"` + NUL.
pub const CMD_FORWARD_INIT: u32 = 2500;
/// CMD_FORWARD_CHECK: `[id][8 zero bytes][node]` + NUL.
pub const CMD_FORWARD_CHECK: u32 = 2501;
/// CMD_FORWARD_CHECK_RESULT: `[id][flag]`.
pub const CMD_FORWARD_CHECK_RESULT: u32 = 2502;
/// CMD_FORWARD_ACTIVE_SLAVE: `[id][8 zero bytes][node]` + NUL: connect a context.
pub const CMD_FORWARD_ACTIVE_SLAVE: u32 = 2503;
/// CMD_FORWARD_ACTIVE_MASTER: `[id]`: the context is connected.
pub const CMD_FORWARD_ACTIVE_MASTER: u32 = 2504;
/// CMD_FORWARD_DATA: `[id][bytes]`.
pub const CMD_FORWARD_DATA: u32 = 2505;
/// CMD_FORWARD_FREE_CONTEXT: `[id]`: the context ended.
pub const CMD_FORWARD_FREE_CONTEXT: u32 = 2506;
/// CMD_FORWARD_LIST: the host's own (`fport ls`), never sent to a device.
pub const CMD_FORWARD_LIST: u32 = 2507;
/// CMD_FORWARD_REMOVE: the host's own (`fport rm`); the device sees CHANNEL_CLOSE.
pub const CMD_FORWARD_REMOVE: u32 = 2508;
/// CMD_FORWARD_SUCCESS: `"0|<rule>"` + NUL: the device's rport rule is set up.
pub const CMD_FORWARD_SUCCESS: u32 = 2509;
/// The zero bytes after the id in CHECK and ACTIVE_SLAVE (`FORWARD_PARAMENTER_BUFSIZE`).
const PARAM_LEN: usize = 8;
/// hdcd's words for a rule it cannot set up.
pub const MSG_PARAMENT_FAILED: &str = "[Fail]Forward parament failed";
/// The echo levels.
const MSG_FAIL: u8 = 0;
const MSG_OK: u8 = 2;

/// Whether `cmd` is one of the forward commands.
pub fn is_forward_command(cmd: u32) -> bool {
    (CMD_FORWARD_INIT..=CMD_FORWARD_SUCCESS).contains(&cmd)
}

/// A node that hdcd's `CheckNodeInfo` accepts: `schema:content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// `tcp:PORT`, on 127.0.0.1.
    Tcp(u16),
    /// Any other schema (`localabstract:`, `jdwp:`, ...), not served here.
    Other(String),
}

/// Parses a node as hdcd's `CheckNodeInfo` does: a ':' neither first nor last; a tcp port
/// of at most 5 digits in 1..=65535.
pub fn parse_node(s: &str) -> Option<Node> {
    let (schema, content) = s.split_once(':')?;
    if schema.is_empty() || content.is_empty() {
        return None;
    }
    if schema == "tcp" {
        if content.len() > 5 || !content.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return match content.parse::<u16>() {
            Ok(p) if p > 0 => Some(Node::Tcp(p)),
            _ => None,
        };
    }
    Some(Node::Other(s.to_string()))
}

/// The context id at the front of a payload, and the rest.
pub fn split_id(p: &[u8]) -> Option<(u32, &[u8])> {
    let (id, rest) = p.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*id), rest))
}

/// CHECK's and ACTIVE_SLAVE's payload: the id and the node text (hdcd needs more than 12
/// bytes).
pub fn parse_point(p: &[u8]) -> Option<(u32, String)> {
    let (id, rest) = split_id(p)?;
    let node = rest.get(PARAM_LEN..).filter(|n| !n.is_empty())?;
    let node = node.split(|&b| b == 0).next().unwrap_or_default();
    Some((id, String::from_utf8_lossy(node).into_owned()))
}

/// CHECK's and ACTIVE_SLAVE's payload for `id` and `node`.
pub fn point(id: u32, node: &str) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0; PARAM_LEN]);
    p.extend_from_slice(node.as_bytes());
    p.push(0);
    p
}

/// INIT's payload: the two nodes (as text, NUL stripped).
pub fn parse_init(p: &[u8]) -> Option<(String, String)> {
    let text = String::from_utf8_lossy(p.split(|&b| b == 0).next().unwrap_or_default());
    let mut it = text.split_whitespace();
    let (a, b) = (it.next()?, it.next()?);
    Some((a.to_string(), b.to_string()))
}

/// For the fuzz target: every parser here on arbitrary bytes.
pub fn fuzz_one(data: &[u8]) {
    let _ = parse_point(data);
    let _ = split_id(data);
    if let Some((a, b)) = parse_init(data) {
        let _ = parse_node(&a);
        let _ = parse_node(&b);
    }
}

/// What a forward task sends the host through.
pub type Out = mpsc::Sender<Vec<u8>>;

/// One session's forwarding: its bounds, and the rport rules that connections on the
/// device are routed to.
pub struct Forwards {
    contexts: Arc<Semaphore>,
    buffered: Arc<Semaphore>,
    rules: Mutex<Rules>,
}

#[derive(Default)]
struct Rules {
    by_tag: HashMap<u16, mpsc::UnboundedSender<Channel>>,
    next: u16,
}

impl Forwards {
    /// Routes the Connect channels that our rport listeners open (`incoming`, the
    /// in-process session's) to their rules, until the session ends.
    pub fn start(mut incoming: mpsc::UnboundedReceiver<Incoming>) -> Arc<Forwards> {
        let f = Arc::new(Forwards {
            contexts: Arc::new(Semaphore::new(MAX_FORWARD_CONTEXTS)),
            buffered: Arc::new(Semaphore::new(MAX_FORWARD_SESSION_BUFFERED)),
            rules: Mutex::new(Rules::default()),
        });
        let weak = Arc::downgrade(&f);
        tokio::spawn(async move {
            while let Some(inc) = incoming.recv().await {
                let rule = match (crate::proto::from_bytes(&inc.request), weak.upgrade()) {
                    (Ok(Request::Connect { port }), Some(f)) => f.rule(port),
                    _ => None,
                };
                match rule {
                    Some(tx) => {
                        if let Err(e) = tx.send(inc.channel) {
                            e.0.close(&Exit::fail("[Fail]the forward rule ended"));
                        }
                    }
                    None => inc
                        .channel
                        .close(&Exit::fail("[Fail]no forward rule for this connection")),
                }
            }
        });
        f
    }

    fn rule(&self, tag: u16) -> Option<mpsc::UnboundedSender<Channel>> {
        self.rules.lock().ok()?.by_tag.get(&tag).cloned()
    }

    /// A tag for a new rport rule and the receiver of its connections.
    fn register(&self) -> Option<(u16, mpsc::UnboundedReceiver<Channel>)> {
        let mut r = self.rules.lock().ok()?;
        r.by_tag.retain(|_, tx| !tx.is_closed());
        if r.by_tag.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            r.next = r.next.wrapping_add(1).max(1);
            let tag = r.next;
            if let std::collections::hash_map::Entry::Vacant(e) = r.by_tag.entry(tag) {
                let (tx, rx) = mpsc::unbounded_channel();
                e.insert(tx);
                return Some((tag, rx));
            }
        }
    }
}

/// One context, seen from its rule's task.
struct Ctx {
    /// Bytes from the host, in order, each with its share of the buffer bounds.
    to_dev: mpsc::UnboundedSender<(Bytes, [OwnedSemaphorePermit; 2])>,
    /// This context's buffer bound.
    room: Arc<Semaphore>,
    /// For an rport context not yet activated by the host: the channel, started on
    /// ACTIVE_MASTER.
    waiting: Option<Channel>,
    sender: Sender,
    _slot: OwnedSemaphorePermit,
}

/// One rule's task: `rx` has the channel's packets, the first a CHECK (fport: the host
/// listens) or an INIT (rport: the device listens).
pub async fn run(
    c: u32,
    mut rx: mpsc::Receiver<ohos::Packet>,
    local: Session,
    out: Out,
    fwd: Arc<Forwards>,
) {
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<u32>();
    let mut ctxs: HashMap<u32, Ctx> = HashMap::new();
    // rport: the listener's channel, its connections, the host's node and the check's id.
    let mut listener: Option<Channel> = None;
    let mut conns: Option<mpsc::UnboundedReceiver<Channel>> = None;
    let mut remote_node = String::new();
    let mut rule_text = String::new();
    let mut check_id = None;
    let fail = |why: &str| {
        vec![
            echo(c, MSG_FAIL, why),
            packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1]),
        ]
    };
    let end = loop {
        tokio::select! {
            p = rx.recv() => {
                let Some(p) = p else { break None };
                let cmd = p.protect.command_flag;
                match cmd {
                    CMD_KERNEL_CHANNEL_CLOSE => break None,
                    CMD_FORWARD_INIT if listener.is_none() => {
                        let _ = out.send(packet(c, crate::ohos_device::CMD_KERNEL_WAKEUP_SLAVETASK, &[])).await;
                        let Some((here, there)) = parse_init(&p.payload) else {
                            break Some(fail(MSG_PARAMENT_FAILED));
                        };
                        let (Some(Node::Tcp(port)), Some(_)) = (parse_node(&here), parse_node(&there)) else {
                            break Some(fail(MSG_PARAMENT_FAILED));
                        };
                        match listen(&local, &fwd, port).await {
                            Ok((l, rxc)) => {
                                listener = Some(l);
                                conns = Some(rxc);
                            }
                            Err(why) => break Some(fail(&why)),
                        }
                        rule_text = format!("{here} {there}");
                        remote_node = there;
                        let id = new_id(&ctxs);
                        check_id = Some(id);
                        let _ = out.send(packet(c, CMD_FORWARD_CHECK, &point(id, &remote_node))).await;
                    }
                    CMD_FORWARD_CHECK => {
                        // fport: the host checks the device's node. hdcd does not connect
                        // here; it answers 0 (and the host ignores the flag).
                        let Some((id, node)) = parse_point(&p.payload) else {
                            break Some(fail(MSG_PARAMENT_FAILED));
                        };
                        match parse_node(&node) {
                            Some(Node::Tcp(_)) => {
                                let mut r = id.to_be_bytes().to_vec();
                                r.push(0);
                                let _ = out.send(packet(c, CMD_FORWARD_CHECK_RESULT, &r)).await;
                            }
                            _ => break Some(fail(MSG_PARAMENT_FAILED)),
                        }
                    }
                    CMD_FORWARD_CHECK_RESULT
                        if check_id.is_some() && split_id(&p.payload).map(|x| x.0) == check_id =>
                    {
                        // rport: the host has its half; the rule stands.
                        check_id = None;
                        let _ = out.send(echo(c, MSG_OK, "Forwardport result:OK")).await;
                        let mut s = format!("0|{rule_text}").into_bytes();
                        s.push(0);
                        let _ = out.send(packet(c, CMD_FORWARD_SUCCESS, &s)).await;
                    }
                    CMD_FORWARD_ACTIVE_SLAVE => {
                        let Some((id, node)) = parse_point(&p.payload) else {
                            break Some(fail(MSG_PARAMENT_FAILED));
                        };
                        let Some(Node::Tcp(port)) = parse_node(&node) else {
                            let _ = out.send(packet(c, CMD_FORWARD_FREE_CONTEXT, &id.to_be_bytes())).await;
                            break Some(fail(MSG_PARAMENT_FAILED));
                        };
                        if ctxs.contains_key(&id) {
                            continue;
                        }
                        let opened = fwd.contexts.clone().try_acquire_owned().ok().and_then(|slot| {
                            let ch = local.open(&crate::proto::to_bytes(&Request::Connect { port })).ok()?;
                            Some((slot, ch))
                        });
                        let Some((slot, ch)) = opened else {
                            tracing::warn!(tag = "hdcd", "forward: context refused (limit {MAX_FORWARD_CONTEXTS})");
                            let _ = out.send(packet(c, CMD_FORWARD_FREE_CONTEXT, &id.to_be_bytes())).await;
                            continue;
                        };
                        let _ = out.send(packet(c, CMD_FORWARD_ACTIVE_MASTER, &id.to_be_bytes())).await;
                        ctxs.insert(id, start_ctx(c, id, ch, slot, false, &out, &ended_tx));
                    }
                    CMD_FORWARD_ACTIVE_MASTER => {
                        let Some((id, _)) = split_id(&p.payload) else { continue };
                        if let Some(ctx) = ctxs.get_mut(&id)
                            && let Some(ch) = ctx.waiting.take()
                        {
                            tokio::spawn(up(c, id, ch, out.clone(), ended_tx.clone()));
                        }
                    }
                    CMD_FORWARD_DATA => {
                        let Some((id, data)) = split_id(&p.payload) else { continue };
                        let Some(ctx) = ctxs.get(&id) else { continue };
                        if data.is_empty() {
                            continue;
                        }
                        let n = data.len().min(MAX_FORWARD_CONTEXT_BUFFERED) as u32;
                        let permits = async {
                            let own = ctx.room.clone().acquire_many_owned(n).await.ok()?;
                            let all = fwd.buffered.clone().acquire_many_owned(n).await.ok()?;
                            Some([own, all])
                        };
                        match tokio::time::timeout(FORWARD_STALL_TIMEOUT, permits).await {
                            Ok(Some(permits)) => {
                                let _ = ctx.to_dev.send((Bytes::copy_from_slice(data), permits));
                            }
                            _ => {
                                tracing::warn!(tag = "hdcd", "forward: context {id} stalled, freed");
                                free(&mut ctxs, id, "[Fail]the device's connection stopped reading");
                                let _ = out.send(packet(c, CMD_FORWARD_FREE_CONTEXT, &id.to_be_bytes())).await;
                            }
                        }
                    }
                    CMD_FORWARD_FREE_CONTEXT => {
                        if let Some((id, _)) = split_id(&p.payload) {
                            free(&mut ctxs, id, "");
                        }
                    }
                    _ => {}
                }
            }
            Some(id) = ended.recv() => {
                // Our end of a context ended: the host frees it too, unless it did first.
                if ctxs.remove(&id).is_some() {
                    let _ = out.send(packet(c, CMD_FORWARD_FREE_CONTEXT, &id.to_be_bytes())).await;
                }
            }
            Some(ch) = recv_conn(&mut conns) => {
                // rport: a connection on the device's port.
                let Ok(slot) = fwd.contexts.clone().try_acquire_owned() else {
                    tracing::warn!(tag = "hdcd", "forward: connection refused (limit {MAX_FORWARD_CONTEXTS})");
                    ch.close(&Exit::fail("[Fail]too many forwarded connections"));
                    continue;
                };
                let id = new_id(&ctxs);
                ctxs.insert(id, start_ctx(c, id, ch, slot, true, &out, &ended_tx));
                let _ = out.send(packet(c, CMD_FORWARD_ACTIVE_SLAVE, &point(id, &remote_node))).await;
            }
            ev = recv_listener(&mut listener) => {
                // The device's listener ended (it could not accept any more).
                let why = match ev {
                    Event::Close(e) if !e.message.is_empty() => e.message,
                    _ => MSG_PARAMENT_FAILED.to_string(),
                };
                listener = None;
                break Some(fail(&why));
            }
        }
    };
    for (_, ctx) in ctxs.drain() {
        ctx.sender
            .close(&Exit::fail("[Fail]the forward rule was removed"));
    }
    if let Some(l) = listener {
        l.close(&Exit::ok());
    }
    for p in end.unwrap_or_default() {
        let _ = out.send(p).await;
    }
}

async fn recv_conn(c: &mut Option<mpsc::UnboundedReceiver<Channel>>) -> Option<Channel> {
    match c {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_listener(l: &mut Option<Channel>) -> Event {
    loop {
        match l {
            Some(ch) => match ch.recv().await {
                e @ Event::Close(_) => return e,
                _ => continue,
            },
            None => std::future::pending::<()>().await,
        }
    }
}

/// Sets up rport's listener on the device: our ReverseListen, tagged for [`Forwards`]; its
/// first word says whether it listens.
async fn listen(
    local: &Session,
    fwd: &Forwards,
    port: u16,
) -> Result<(Channel, mpsc::UnboundedReceiver<Channel>), String> {
    let failed = || format!("[Fail]TCP Port listen failed at {port}");
    let (tag, conns) = fwd.register().ok_or_else(failed)?;
    let req = Request::ReverseListen {
        port,
        host_port: tag,
    };
    let mut ch = local
        .open(&crate::proto::to_bytes(&req))
        .map_err(|e| e.to_string())?;
    loop {
        match ch.recv().await {
            Event::Ctrl(Ctrl::Text(_)) => return Ok((ch, conns)),
            Event::Close(e) => {
                tracing::info!(tag = "hdcd", "rport on {port}: {}", e.message);
                return Err(failed());
            }
            _ => {}
        }
    }
}

/// A fresh context id (hdcd's are random too), never 0 nor one in use.
fn new_id(ctxs: &HashMap<u32, Ctx>) -> u32 {
    loop {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        let id = u32::from_ne_bytes(b);
        if id != 0 && !ctxs.contains_key(&id) {
            return id;
        }
    }
}

fn free(ctxs: &mut HashMap<u32, Ctx>, id: u32, why: &str) {
    if let Some(ctx) = ctxs.remove(&id) {
        let exit = if why.is_empty() {
            Exit::ok()
        } else {
            Exit::fail(why)
        };
        ctx.sender.close(&exit);
    }
}

/// Starts a context on our channel `ch`: a writer for the host's bytes, and (unless the host
/// must activate it first) the pump of the device's bytes to the host.
fn start_ctx(
    c: u32,
    id: u32,
    ch: Channel,
    slot: OwnedSemaphorePermit,
    wait: bool,
    out: &Out,
    ended: &mpsc::UnboundedSender<u32>,
) -> Ctx {
    let sender = ch.sender();
    let (to_dev, mut from_host) = mpsc::unbounded_channel::<(Bytes, [OwnedSemaphorePermit; 2])>();
    let tx = ch.sender();
    tokio::spawn(async move {
        while let Some((b, permits)) = from_host.recv().await {
            let r = tx.send(b).await;
            drop(permits);
            if r.is_err() {
                return;
            }
        }
    });
    let waiting = if wait {
        Some(ch)
    } else {
        tokio::spawn(up(c, id, ch, out.clone(), ended.clone()));
        None
    };
    Ctx {
        to_dev,
        room: Arc::new(Semaphore::new(MAX_FORWARD_CONTEXT_BUFFERED)),
        waiting,
        sender,
        _slot: slot,
    }
}

/// The device's bytes of context `id` to the host until its connection ends (OpenHarmony
/// has no half-close: the end of either direction ends the context).
async fn up(c: u32, id: u32, mut ch: Channel, out: Out, ended: mpsc::UnboundedSender<u32>) {
    loop {
        match ch.recv().await {
            Event::Data(d) => {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&d);
                if out.send(packet(c, CMD_FORWARD_DATA, &p)).await.is_err() {
                    break;
                }
            }
            Event::Ctrl(Ctrl::Eof) => break,
            Event::Ctrl(_) => {}
            Event::Close(_) => {
                let _ = ended.send(id);
                return;
            }
        }
    }
    let _ = ended.send(id);
    ch.close(&Exit::ok());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_as_hdcd_checks_them() {
        assert_eq!(parse_node("tcp:8080"), Some(Node::Tcp(8080)));
        assert_eq!(parse_node("tcp:0"), None);
        assert_eq!(parse_node("tcp:65536"), None);
        assert_eq!(parse_node("tcp:008080"), None);
        assert_eq!(parse_node("tcp:"), None);
        assert_eq!(parse_node(":1"), None);
        assert_eq!(parse_node("tcp"), None);
        assert_eq!(
            parse_node("localabstract:x"),
            Some(Node::Other("localabstract:x".into()))
        );
    }

    #[test]
    fn points_and_inits_round_trip() {
        let p = point(0x0102_0304, "tcp:80");
        assert_eq!(&p[..4], &[1, 2, 3, 4]);
        assert_eq!(&p[4..12], &[0; 8]);
        assert_eq!(&p[12..], b"tcp:80\0");
        assert_eq!(parse_point(&p), Some((0x0102_0304, "tcp:80".into())));
        assert_eq!(parse_point(&p[..12]), None, "hdcd needs more than 12 bytes");
        assert_eq!(
            parse_init(b"tcp:1 tcp:2\0"),
            Some(("tcp:1".into(), "tcp:2".into()))
        );
        assert_eq!(parse_init(b"tcp:1\0"), None);
    }
}
