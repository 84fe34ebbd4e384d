//! The device views over FUSE (fuser): one file system mounted at
//! `<data>/mnt/hmdfs/<userId>/account`, holding
//! - `device_view/local/...`: this device's account tree, through an in-process [`Server`];
//! - `device_view/<networkId>/...`: each trusted online peer's, through its [`Remote`];
//! - `merge_view/...`: all of them merged, with [`crate::merge`]'s names for collisions.
//!
//! Consistency is OpenHarmony's close-to-open: an open always asks the owner, and keeps the
//! kernel's cached pages only if the owner's inode, size, mtime and ctime are those the pages
//! were read at; names and attributes are remembered for a second at most ([`crate::cache`],
//! `ENTRY_TTL`; any change through the views forgets them), and a listing from its start
//! always asks the owner. Sequential reads of a remote file are read ahead
//! ([`crate::ahead`]) by calls in flight together on the link. Writes
//! go through to the owner as they are made, a close of a written file and an fsync make
//! them durable there (fsync forwarded). A peer going OFFLINE leaves `device_view` at once,
//! and its open files answer EIO (EAGAIN for writes) without waiting.

use crate::ahead::{ReadAhead, Served};
use crate::cache::Cache;
use crate::link::Remote;
use crate::proto::DirEntry;
use crate::proto::{self, Attr, Kind, MAX_IO, Reply, Request, Time, flags};
use crate::serve::Server;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, KernelConfig,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, TimeOrNow,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The view of this device's own tree, beside the peers' networkIds.
pub const LOCAL: &str = "local";
/// The directory of the device views.
pub const DEVICE_VIEW: &str = "device_view";
/// The directory of every device's files merged ([`crate::merge`]'s names).
pub const MERGE_VIEW: &str = "merge_view";
/// The view name of merge-view directories (no networkId looks like it).
const MERGE: &str = "merge";

/// Where the views of user `user` are mounted, under a device's data dir.
pub fn mount_point(data_dir: &Path, user: u32) -> PathBuf {
    data_dir.join(format!("mnt/hmdfs/{user}/account"))
}

/// The user's account tree that this device serves (its `device_view/local`), under a
/// device's data dir (OpenHarmony keeps it under `/data/service/el2/<userId>/hmdfs`).
pub fn account_tree(data_dir: &Path, user: u32) -> PathBuf {
    data_dir.join(format!("service/el2/{user}/hmdfs/account"))
}

/// Apps' own distributed files in this device's account tree: `data/<bundleName>` below it
/// is one app's (made at install, as OpenHarmony's storage daemon does), what the views serve
/// of that app from here.
pub fn apps_tree(data_dir: &Path, user: u32) -> PathBuf {
    account_tree(data_dir, user).join("data")
}

/// Apps' distributed files merged across devices: `<bundleName>` below it is what that app's
/// sandbox shows at `/data/storage/el2/distributedfiles`.
pub fn apps_merge_view(data_dir: &Path, user: u32) -> PathBuf {
    mount_point(data_dir, user).join(MERGE_VIEW).join("data")
}

/// Why the views cannot be mounted here, if they cannot (no /dev/fuse or no fusermount3,
/// which fuser runs to mount without libfuse).
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()));
    (!found).then(|| "fusermount3 (Debian's fuse3) is not installed".into())
}

/// One view's backend: the local server or a peer's link.
pub trait Backend: Send + Sync {
    /// Runs one request; `Err` when the owner cannot be reached (EIO).
    fn call(&self, req: Request) -> Result<Reply, i32>;
    /// Whether the owner is gone for good (its link closed).
    fn gone(&self) -> bool {
        false
    }
    /// Whether calls can be in flight together ([`Backend::start`] does not run them at
    /// once): what makes read-ahead worth its copies.
    fn pipelined(&self) -> bool {
        false
    }
    /// Sends a request without waiting for its reply; by default it runs at once.
    fn start(&self, req: Request) -> Ticket {
        Ticket::Done(Some(self.call(req)))
    }
    /// The reply of a started request, waiting for it if needed; whether it had to wait.
    fn finish(&self, t: &mut Ticket) -> (Result<Reply, i32>, bool) {
        match t {
            Ticket::Done(r) => (r.take().unwrap_or(Err(proto::errno::EIO)), false),
            Ticket::Flying(_) => (Err(proto::errno::EIO), false),
        }
    }
}

/// A request started on a [`Backend`].
pub enum Ticket {
    /// Run already: its reply (taken once).
    Done(Option<Result<Reply, i32>>),
    /// In flight on a link (taken once).
    Flying(Option<crate::link::Pending>),
}

impl Backend for Server {
    fn call(&self, req: Request) -> Result<Reply, i32> {
        Ok(Server::call(self, req))
    }
}

impl Backend for Remote {
    fn call(&self, req: Request) -> Result<Reply, i32> {
        Remote::call(self, req)
    }
    fn gone(&self) -> bool {
        self.is_closed()
    }
    fn pipelined(&self) -> bool {
        true
    }
    fn start(&self, req: Request) -> Ticket {
        match Remote::start(self, req) {
            Ok(p) => Ticket::Flying(Some(p)),
            Err(e) => Ticket::Done(Some(Err(e))),
        }
    }
    fn finish(&self, t: &mut Ticket) -> (Result<Reply, i32>, bool) {
        match t {
            Ticket::Done(r) => (r.take().unwrap_or(Err(proto::errno::EIO)), false),
            Ticket::Flying(p) => match p.take() {
                Some(p) => match p.try_take() {
                    Some(r) => (r, false),
                    None => (p.wait(self), true),
                },
                None => (Err(proto::errno::EIO), false),
            },
        }
    }
}

/// Read-ahead memory all open files of the views may hold, in chunks of
/// [`crate::ahead::CHUNK`] (64 MiB: four files at the widest window).
const AHEAD_BUDGET: usize = 64;

/// A read-ahead chunk's call, holding its share of [`AHEAD_BUDGET`] until it is dropped.
struct AheadTicket {
    t: Ticket,
    budget: Arc<AtomicUsize>,
}

impl Drop for AheadTicket {
    fn drop(&mut self) {
        self.budget.fetch_add(1, Ordering::Relaxed);
    }
}

/// An open file's chunks, read through its backend.
struct FileSource<'a> {
    backend: &'a dyn Backend,
    handle: u64,
    budget: &'a Arc<AtomicUsize>,
}

impl crate::ahead::Source for FileSource<'_> {
    type Ticket = AheadTicket;

    fn start(&self, offset: u64, size: u32) -> Option<AheadTicket> {
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .ok()?;
        let t = self.backend.start(Request::Read {
            handle: self.handle,
            offset,
            size,
        });
        Some(AheadTicket {
            t,
            budget: self.budget.clone(),
        })
    }

    fn finish(&self, t: &mut AheadTicket) -> (Result<Vec<u8>, i32>, bool) {
        let (r, waited) = self.backend.finish(&mut t.t);
        let r = match r {
            Ok(Reply::Data(d)) => Ok(d),
            Ok(Reply::Error(e)) | Err(e) => Err(e),
            Ok(_) => Err(proto::errno::EIO),
        };
        (r, waited)
    }
}

const ROOT: u64 = 1;
const DEVICES: u64 = 2;
const MERGED: u64 = 3;
/// The block size `stat` reports: what `cp` and friends size their buffers by.
const BLKSIZE: u32 = 128 * 1024;
/// Attributes are asked for on every use: the kernel's idea of a file's size bounds its
/// reads, so a size it kept would break close-to-open (a file grown on its owner, then
/// opened here, must read to its new end). Our own cache ([`crate::cache`]) answers most of
/// these asks without a call.
const TTL: Duration = Duration::ZERO;
/// How long the kernel keeps a name's entry: nodes are named by (view, path), so a kept
/// entry still leads to whatever the owner has at that path now (a removed file answers
/// ENOENT at open); no negative entry is kept. It spares `ls -l` a lookup per file.
const ENTRY_TTL: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Node {
    view: String,
    path: String,
    /// The owner's attributes when the kernel's cached pages of the file were last valid.
    pages: Option<Attr>,
}

#[derive(Default)]
struct Nodes {
    by_ino: HashMap<u64, Node>,
    by_key: HashMap<(String, String), u64>,
    next: u64,
}

impl Nodes {
    fn ino(&mut self, view: &str, path: &str) -> u64 {
        let key = (view.to_string(), path.to_string());
        if let Some(i) = self.by_key.get(&key) {
            return *i;
        }
        self.next = self.next.max(MERGED) + 1;
        let ino = self.next;
        self.by_key.insert(key, ino);
        self.by_ino.insert(
            ino,
            Node {
                view: view.to_string(),
                path: path.to_string(),
                pages: None,
            },
        );
        ino
    }

    /// `from` (and what is under it) is now `to`, in one view.
    fn renamed(&mut self, view: &str, from: &str, to: &str) {
        let moved: Vec<(u64, String)> = self
            .by_ino
            .iter()
            .filter(|(_, n)| n.view == view)
            .filter_map(|(i, n)| {
                let rest = if n.path == from {
                    Some("")
                } else {
                    n.path.strip_prefix(from).filter(|r| r.starts_with('/'))
                };
                rest.map(|r| (*i, format!("{to}{r}")))
            })
            .collect();
        let mut replaced = Vec::new();
        for (ino, path) in &moved {
            if let Some(n) = self.by_ino.get_mut(ino) {
                self.by_key.remove(&(n.view.clone(), n.path.clone()));
                n.path = path.clone();
                n.pages = None;
            }
        }
        for (ino, path) in moved {
            // A node the new name had before is replaced by the moved one.
            if let Some(old) = self.by_key.insert((view.to_string(), path), ino)
                && old != ino
            {
                replaced.push(old);
            }
        }
        for old in replaced {
            self.by_ino.remove(&old);
        }
    }
}

struct OpenFile {
    backend: Arc<dyn Backend>,
    handle: u64,
    /// Written since the last fsync: a close makes it durable on the owner.
    dirty: bool,
    /// A remote file opened for reading: what is read ahead of its reader.
    ahead: Option<Arc<Mutex<ReadAhead<AheadTicket>>>>,
}

/// The device views of one user: the FUSE file system.
pub struct Views {
    local: Arc<dyn Backend>,
    peers: RwLock<BTreeMap<String, Arc<dyn Backend>>>,
    nodes: Mutex<Nodes>,
    files: Mutex<HashMap<u64, OpenFile>>,
    next_fh: AtomicU64,
    started: SystemTime,
    /// Chunks left of [`AHEAD_BUDGET`].
    ahead_budget: Arc<AtomicUsize>,
    /// Listings by (view, path), attributes by (view, path), merged listings by their
    /// sources: answered from memory for [`crate::cache::TTL`].
    listings: Mutex<Cache<Place, Arc<Vec<DirEntry>>>>,
    attrs: Mutex<Cache<Place, Attr>>,
    merged: Mutex<Cache<Vec<Place>, Arc<Merged>>>,
}

/// A path on one view: (view, path).
type Place = (String, String);

/// A merged listing and where each name is in it.
struct Merged {
    shown: Vec<crate::merge::Shown>,
    by_name: HashMap<String, usize>,
}

impl Merged {
    fn find(&self, name: &str) -> Option<&crate::merge::Shown> {
        self.by_name.get(name).and_then(|i| self.shown.get(*i))
    }
}

fn now() -> Instant {
    Instant::now()
}

impl Views {
    /// Views with this device's tree at `device_view/local` and no peers yet.
    pub fn new(local: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(Self {
            local,
            peers: RwLock::new(BTreeMap::new()),
            nodes: Mutex::new(Nodes::default()),
            files: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            started: SystemTime::now(),
            ahead_budget: Arc::new(AtomicUsize::new(AHEAD_BUDGET)),
            listings: Mutex::default(),
            attrs: Mutex::default(),
            merged: Mutex::default(),
        })
    }

    /// A peer came online: its tree appears at `device_view/<network_id>`.
    pub fn add_peer(&self, network_id: &str, backend: Arc<dyn Backend>) {
        if let Ok(mut p) = self.peers.write() {
            p.insert(network_id.to_string(), backend);
        }
    }

    /// A peer went offline: its view leaves `device_view` (its open files fail on their own,
    /// their link being closed).
    pub fn remove_peer(&self, network_id: &str) {
        if let Ok(mut p) = self.peers.write() {
            p.remove(network_id);
        }
    }

    /// The peers shown, by networkId.
    pub fn peers(&self) -> Vec<String> {
        self.peers
            .read()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn backend(&self, view: &str) -> Option<Arc<dyn Backend>> {
        if view == LOCAL {
            return Some(self.local.clone());
        }
        self.peers
            .read()
            .ok()?
            .get(view)
            .filter(|b| !b.gone())
            .cloned()
    }

    fn node(&self, ino: u64) -> Option<Node> {
        self.nodes.lock().ok()?.by_ino.get(&ino).cloned()
    }

    /// The node `ino`, its backend, or ENOENT (an unknown node or a view that is gone).
    fn resolve(&self, ino: u64) -> Result<(Node, Arc<dyn Backend>), Errno> {
        let n = match self.merged_path(ino) {
            // A merged directory stands for its first device's (attributes, changes).
            Some(merged) => {
                let (view, path) = self
                    .merge_sources(&merged)?
                    .into_iter()
                    .next()
                    .ok_or(Errno::ENOENT)?;
                Node {
                    view,
                    path,
                    pages: None,
                }
            }
            None => self.node(ino).ok_or(Errno::ENOENT)?,
        };
        let b = self.backend(&n.view).ok_or(Errno::ENOENT)?;
        Ok((n, b))
    }

    /// The merged path of a merge-view directory node, if `ino` is one.
    fn merged_path(&self, ino: u64) -> Option<String> {
        if ino == MERGED {
            return Some(String::new());
        }
        self.node(ino).filter(|n| n.view == MERGE).map(|n| n.path)
    }

    fn child(
        &self,
        parent: u64,
        name: &OsStr,
    ) -> Result<(String, String, Arc<dyn Backend>), Errno> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        proto::check_name(name).map_err(Errno::from_i32)?;
        if let Some(merged) = self.merged_path(parent) {
            // What the name shows on its device, or where a new one would be made.
            let sources = self.merge_sources(&merged)?;
            let shown = self.merge_list(&sources, false)?;
            let at = match shown.find(name) {
                Some(s) => Self::sources_of(&sources, s).into_iter().next(),
                None => sources
                    .iter()
                    .find(|(v, _)| v == LOCAL)
                    .or_else(|| sources.first())
                    .map(|(v, p)| (v.clone(), proto::join(p, name))),
            };
            let (view, path) = at.ok_or(Errno::ENOENT)?;
            let b = self.backend(&view).ok_or(Errno::ENOENT)?;
            return Ok((view, path, b));
        }
        let (n, b) = self.resolve(parent)?;
        Ok((n.view.clone(), proto::join(&n.path, name), b))
    }

    /// Where a new entry `name` of `parent` is made (in the merge view: EEXIST for a name
    /// any device shows).
    fn new_child(
        &self,
        parent: u64,
        merged: &Option<String>,
        name: &OsStr,
    ) -> Result<(String, String, Arc<dyn Backend>), Errno> {
        match merged {
            Some(m) => self.merge_new(m, name.to_str().ok_or(Errno::EINVAL)?),
            None => self.child(parent, name),
        }
    }

    fn ino(&self, view: &str, path: &str) -> u64 {
        self.nodes
            .lock()
            .map(|mut n| n.ino(view, path))
            .unwrap_or(0)
    }

    fn dir_attr(&self, ino: u64) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    /// Every device's directory a merge-view directory shows: `(view, path there)`.
    fn merge_sources(&self, merged: &str) -> Result<Vec<(String, String)>, Errno> {
        let mut sources: Vec<(String, String)> = std::iter::once(LOCAL.to_string())
            .chain(self.peers())
            .map(|v| (v, String::new()))
            .collect();
        if merged.is_empty() {
            return Ok(sources);
        }
        for c in merged.split('/') {
            let shown = self.merge_list(&sources, false)?;
            let s = shown.find(c).ok_or(Errno::ENOENT)?;
            if s.kind != crate::merge::Kind::Dir {
                return Err(Errno::ENOTDIR);
            }
            sources = Self::sources_of(&sources, s);
        }
        Ok(sources)
    }

    /// Where a shown entry of a directory with `sources` is, on each device it shows.
    fn sources_of(sources: &[(String, String)], s: &crate::merge::Shown) -> Vec<(String, String)> {
        s.from
            .iter()
            .filter_map(|dev| {
                let view = dev.clone().unwrap_or_else(|| LOCAL.to_string());
                sources
                    .iter()
                    .find(|(v, _)| *v == view)
                    .map(|(v, p)| (v.clone(), proto::join(p, &s.real)))
            })
            .collect()
    }

    /// The listing of `path` on `view` (every part of it), from the cache unless `fresh`;
    /// its entries' attributes are cached too.
    fn list(&self, view: &str, path: &str, fresh: bool) -> Result<Arc<Vec<DirEntry>>, Errno> {
        let key = (view.to_string(), path.to_string());
        if !fresh && let Some(l) = self.listings.lock().ok().and_then(|c| c.get(&key, now())) {
            return Ok(l);
        }
        let b = self.backend(view).ok_or(Errno::ENOENT)?;
        let mut all = Vec::new();
        loop {
            let r = b.call(Request::Readdir {
                path: path.to_string(),
                offset: all.len() as u64,
            });
            let (es, done) = match r {
                Ok(Reply::Entries { entries, done }) => (entries, done),
                r => return Err(failed(r)),
            };
            // A listing that stops moving ends (an owner cannot keep us here).
            let done = done || es.is_empty();
            all.extend(es);
            if done {
                break;
            }
        }
        let t = now();
        if let Ok(mut a) = self.attrs.lock() {
            // Not what cannot be opened (a link out of the tree, a fifo): a walk through it
            // must hear the owner's own answer.
            for e in all.iter().filter(|e| e.attr.kind != Kind::Other) {
                a.put((view.to_string(), proto::join(path, &e.name)), e.attr, t);
            }
        }
        let all = Arc::new(all);
        if let Ok(mut c) = self.listings.lock() {
            c.put(key, all.clone(), t);
        }
        Ok(all)
    }

    /// The cached attributes of `path` on `view`, else the owner's (then cached).
    fn attr(&self, view: &str, path: &str, b: &dyn Backend) -> Result<Attr, Errno> {
        let key = (view.to_string(), path.to_string());
        if let Some(a) = self.attrs.lock().ok().and_then(|c| c.get(&key, now())) {
            return Ok(a);
        }
        match b.call(Request::Lookup {
            path: path.to_string(),
        }) {
            Ok(Reply::Attr(a)) => {
                if let Ok(mut c) = self.attrs.lock() {
                    c.put(key, a, now());
                }
                Ok(a)
            }
            r => Err(failed(r)),
        }
    }

    /// Runs a request that changes a file, then forgets what the caches hold.
    fn change(&self, b: &dyn Backend, req: Request) -> Result<Reply, i32> {
        let r = b.call(req);
        self.changed();
        r
    }

    /// Forgets every cached listing and attribute (a change made through the views).
    fn changed(&self) {
        if let Ok(mut c) = self.listings.lock() {
            c.clear();
        }
        if let Ok(mut c) = self.merged.lock() {
            c.clear();
        }
        if let Ok(mut c) = self.attrs.lock() {
            c.clear();
        }
    }

    /// The merged listing of the directories `sources` (devices gone since are left out),
    /// from the cache unless `fresh`.
    fn merge_list(&self, sources: &[(String, String)], fresh: bool) -> Result<Arc<Merged>, Errno> {
        let key = sources.to_vec();
        if !fresh && let Some(m) = self.merged.lock().ok().and_then(|c| c.get(&key, now())) {
            return Ok(m);
        }
        let mut entries = Vec::new();
        for (view, path) in sources {
            // A device whose directory is gone or unreadable shows nothing here.
            let Ok(listed) = self.list(view, path, fresh) else {
                continue;
            };
            entries.extend(listed.iter().map(|e| crate::merge::Entry {
                device: (view != LOCAL).then(|| view.clone()),
                name: e.name.clone(),
                kind: match e.attr.kind {
                    Kind::Dir => crate::merge::Kind::Dir,
                    _ => crate::merge::Kind::File,
                },
            }));
        }
        let shown = crate::merge::merge(&entries);
        let by_name = shown
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let m = Arc::new(Merged { shown, by_name });
        if let Ok(mut c) = self.merged.lock() {
            c.put(key, m.clone(), now());
        }
        Ok(m)
    }

    /// The node a shown entry of the merge-view directory `merged` is: a directory is a merge
    /// node, a file the node of the one device's file it shows.
    fn merge_ino(&self, merged: &str, s: &crate::merge::Shown, at: &(String, String)) -> u64 {
        if s.kind == crate::merge::Kind::Dir {
            self.ino(MERGE, &proto::join(merged, &s.name))
        } else {
            self.ino(&at.0, &at.1)
        }
    }

    /// A child of the merge-view directory `merged`, with its attributes.
    fn merge_child(&self, merged: &str, name: &str) -> Result<(u64, Attr), Errno> {
        let sources = self.merge_sources(merged)?;
        let shown = self.merge_list(&sources, false)?;
        let s = shown.find(name).ok_or(Errno::ENOENT)?;
        let at = Self::sources_of(&sources, s)
            .into_iter()
            .next()
            .ok_or(Errno::ENOENT)?;
        let b = self.backend(&at.0).ok_or(Errno::ENOENT)?;
        let attr = self.attr(&at.0, &at.1, &*b)?;
        Ok((self.merge_ino(merged, s, &at), attr))
    }

    /// Where a new entry `name` of the merge-view directory `merged` is made: this device's
    /// directory if it has one, else the first device's. EEXIST if any device shows the name.
    fn merge_new(
        &self,
        merged: &str,
        name: &str,
    ) -> Result<(String, String, Arc<dyn Backend>), Errno> {
        proto::check_name(name).map_err(Errno::from_i32)?;
        let sources = self.merge_sources(merged)?;
        if crate::merge::taken(&self.merge_list(&sources, true)?.shown, name) {
            return Err(Errno::EEXIST);
        }
        let (view, path) = sources
            .iter()
            .find(|(v, _)| v == LOCAL)
            .or_else(|| sources.first())
            .cloned()
            .ok_or(Errno::ENOENT)?;
        let b = self.backend(&view).ok_or(Errno::ENOENT)?;
        Ok((view, proto::join(&path, name), b))
    }

    fn with_file<T>(&self, fh: FileHandle, f: impl FnOnce(&mut OpenFile) -> T) -> Option<T> {
        self.files.lock().ok()?.get_mut(&fh.0).map(f)
    }

    fn opened(
        &self,
        ino: u64,
        backend: Arc<dyn Backend>,
        handle: u64,
        attr: &Attr,
        reading: bool,
    ) -> (u64, bool) {
        let keep = match self.nodes.lock() {
            Ok(mut n) => n.by_ino.get_mut(&ino).is_some_and(|node| {
                let keep = node.pages.is_some_and(|p| p.same_content(attr));
                node.pages = Some(*attr);
                keep
            }),
            Err(_) => false,
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let ahead = (reading && backend.pipelined())
            .then(|| Arc::new(Mutex::new(ReadAhead::new(attr.size))));
        if let Ok(mut f) = self.files.lock() {
            f.insert(
                fh,
                OpenFile {
                    backend,
                    handle,
                    dirty: false,
                    ahead,
                },
            );
        }
        (fh, keep)
    }
}

/// The errno of a failed call: what the owner answered, EIO when it cannot be reached.
fn failed(r: Result<Reply, i32>) -> Errno {
    match r {
        Ok(Reply::Error(e)) | Err(e) => Errno::from_i32(e),
        Ok(_) => Errno::EIO,
    }
}

fn to_system(t: Time) -> SystemTime {
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs())
    }
}

fn to_time(t: TimeOrNow) -> Time {
    let s = match t {
        TimeOrNow::SpecificTime(s) => s,
        TimeOrNow::Now => SystemTime::now(),
    };
    match s.duration_since(UNIX_EPOCH) {
        Ok(d) => Time {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(_) => Time::default(),
    }
}

fn fuse_attr(ino: u64, a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: a.size,
        blocks: a.blocks,
        atime: to_system(a.atime),
        mtime: to_system(a.mtime),
        ctime: to_system(a.ctime),
        crtime: to_system(a.ctime),
        kind: fuse_kind(a.kind),
        perm: a.perm & 0o7777,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// What the kernel is told an entry is; something that cannot be opened looks like a file
/// (its open is refused).
fn fuse_kind(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::File | Kind::Other => FileType::RegularFile,
    }
}

/// The protocol's open flags for the kernel's.
fn proto_flags(f: i32) -> u32 {
    let mut p = match OpenFlags(f).acc_mode() {
        OpenAccMode::O_RDONLY => flags::READ,
        OpenAccMode::O_WRONLY => flags::WRITE,
        OpenAccMode::O_RDWR => flags::READ | flags::WRITE,
    };
    if f & libc_flag::O_TRUNC != 0 {
        p |= flags::TRUNC;
    }
    if f & libc_flag::O_APPEND != 0 {
        p |= flags::APPEND;
    }
    if f & libc_flag::O_EXCL != 0 {
        p |= flags::EXCL;
    }
    p
}

/// The kernel's open flag bits (Linux's, as rustix has them).
mod libc_flag {
    use rustix::fs::OFlags;
    pub(super) const O_TRUNC: i32 = OFlags::TRUNC.bits() as i32;
    pub(super) const O_APPEND: i32 = OFlags::APPEND.bits() as i32;
    pub(super) const O_EXCL: i32 = OFlags::EXCL.bits() as i32;
}

/// The FUSE file system over shared [`Views`] (so the daemon keeps adding and removing peers
/// while it is mounted).
pub struct ViewsFs(pub Arc<Views>);

impl fuser::Filesystem for ViewsFs {
    fn init(&mut self, _req: &fuser::Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_IO);
        let _ = config.set_max_readahead(MAX_IO);
        Ok(())
    }

    fn lookup(&self, _req: &fuser::Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let v = &self.0;
        match parent.0 {
            ROOT if name == DEVICE_VIEW => {
                return reply.entry_with_ttls(
                    &TTL,
                    &ENTRY_TTL,
                    &v.dir_attr(DEVICES),
                    Generation(0),
                );
            }
            ROOT if name == MERGE_VIEW => {
                return reply.entry_with_ttls(&TTL, &ENTRY_TTL, &v.dir_attr(MERGED), Generation(0));
            }
            ROOT => return reply.error(Errno::ENOENT),
            DEVICES => {
                let Some(view) = name.to_str().filter(|n| v.backend(n).is_some()) else {
                    return reply.error(Errno::ENOENT);
                };
                let ino = v.ino(view, "");
                let r = v
                    .backend(view)
                    .map(|b| b.call(Request::Lookup { path: "".into() }));
                return match r {
                    Some(Ok(Reply::Attr(a))) => {
                        reply.entry_with_ttls(&TTL, &ENTRY_TTL, &fuse_attr(ino, &a), Generation(0))
                    }
                    Some(other) => reply.error(failed(other)),
                    None => reply.error(Errno::ENOENT),
                };
            }
            _ => {}
        }
        if let Some(merged) = v.merged_path(parent.0) {
            let Some(name) = name.to_str() else {
                return reply.error(Errno::ENOENT);
            };
            return match v.merge_child(&merged, name) {
                Ok((ino, a)) => {
                    reply.entry_with_ttls(&TTL, &ENTRY_TTL, &fuse_attr(ino, &a), Generation(0))
                }
                Err(e) => reply.error(e),
            };
        }
        let (view, path, b) = match v.child(parent.0, name) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        match v.attr(&view, &path, &*b) {
            Ok(a) => {
                let ino = v.ino(&view, &path);
                reply.entry_with_ttls(&TTL, &ENTRY_TTL, &fuse_attr(ino, &a), Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        let v = &self.0;
        if ino.0 == ROOT || ino.0 == DEVICES {
            return reply.attr(&TTL, &v.dir_attr(ino.0));
        }
        let open = fh.and_then(|fh| v.with_file(fh, |f| (f.backend.clone(), f.handle)));
        // An open file's attributes are the owner's now (the kernel asks for them when a
        // read reaches the size it knows); a name's may come from a recent listing.
        let r = match open {
            Some((b, handle)) => match b.call(Request::Getattr { handle }) {
                Ok(Reply::Attr(a)) => Ok(a),
                r => Err(failed(r)),
            },
            None => match v.resolve(ino.0) {
                Ok((n, b)) => v.attr(&n.view, &n.path, &*b),
                Err(e) => return reply.error(e),
            },
        };
        match r {
            Ok(a) => reply.attr(&TTL, &fuse_attr(ino.0, &a)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let v = &self.0;
        let (n, b) = match v.resolve(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let open = fh.and_then(|fh| v.with_file(fh, |f| (f.backend.clone(), f.handle)));
        let (b, handle) = match open {
            Some((b, h)) => (b, Some(h)),
            None => (b, None),
        };
        let r = b.call(Request::Setattr {
            path: n.path,
            handle,
            size,
            mode,
            atime: atime.map(to_time),
            mtime: mtime.map(to_time),
        });
        v.changed();
        match r {
            Ok(Reply::Attr(a)) => reply.attr(&TTL, &fuse_attr(ino.0, &a)),
            r => reply.error(failed(r)),
        }
    }

    fn mkdir(
        &self,
        _req: &fuser::Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let v = &self.0;
        let merged = v.merged_path(parent.0);
        let (view, path, b) = match v.new_child(parent.0, &merged, name) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let r = b.call(Request::Mkdir {
            path: path.clone(),
            mode: mode & !umask,
        });
        v.changed();
        match r {
            Ok(Reply::Attr(a)) => {
                let ino = match (&merged, name.to_str()) {
                    (Some(m), Some(n)) => v.ino(MERGE, &proto::join(m, n)),
                    _ => v.ino(&view, &path),
                };
                reply.entry_with_ttls(&TTL, &ENTRY_TTL, &fuse_attr(ino, &a), Generation(0))
            }
            r => reply.error(failed(r)),
        }
    }

    fn unlink(&self, _req: &fuser::Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.0.child(parent.0, name) {
            Ok((_, path, b)) => match self.0.change(&*b, Request::Unlink { path }) {
                Ok(Reply::Done) => reply.ok(),
                r => reply.error(failed(r)),
            },
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &fuser::Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.0.child(parent.0, name) {
            Ok((_, path, b)) => match self.0.change(&*b, Request::Rmdir { path }) {
                Ok(Reply::Done) => reply.ok(),
                r => reply.error(failed(r)),
            },
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &fuser::Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let v = &self.0;
        let (from, to) = match (v.child(parent.0, name), v.child(newparent.0, newname)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        if from.0 != to.0 {
            return reply.error(Errno::EXDEV);
        }
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return reply.error(Errno::EINVAL);
        }
        let r = from.2.call(Request::Rename {
            from: from.1.clone(),
            to: to.1.clone(),
            noreplace: flags.contains(RenameFlags::RENAME_NOREPLACE),
        });
        v.changed();
        match r {
            Ok(Reply::Done) => {
                if let Ok(mut n) = v.nodes.lock() {
                    n.renamed(&from.0, &from.1, &to.1);
                }
                reply.ok()
            }
            r => reply.error(failed(r)),
        }
    }

    fn open(&self, _req: &fuser::Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let v = &self.0;
        let (n, b) = match v.resolve(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let pf = proto_flags(flags.0) & !proto::flags::EXCL;
        let r = b.call(Request::Open {
            path: n.path.clone(),
            flags: pf,
        });
        if pf & proto::flags::TRUNC != 0 {
            v.changed();
        }
        match r {
            Ok(Reply::Opened { handle, attr }) => {
                if let Ok(mut c) = v.attrs.lock() {
                    c.put((n.view.clone(), n.path.clone()), attr, now());
                }
                let reading = flags.acc_mode() != OpenAccMode::O_WRONLY;
                let (fh, keep) = v.opened(ino.0, b, handle, &attr, reading);
                let f = if keep {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), f)
            }
            r => reply.error(failed(r)),
        }
    }

    fn create(
        &self,
        _req: &fuser::Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let v = &self.0;
        let merged = v.merged_path(parent.0);
        let (view, path, b) = match v.new_child(parent.0, &merged, name) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let r = b.call(Request::Create {
            path: path.clone(),
            mode: mode & !umask,
            flags: proto_flags(flags),
        });
        v.changed();
        match r {
            Ok(Reply::Opened { handle, attr }) => {
                let ino = v.ino(&view, &path);
                let (fh, _) = v.opened(ino, b, handle, &attr, false);
                reply.created(
                    &TTL,
                    &fuse_attr(ino, &attr),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            }
            r => reply.error(failed(r)),
        }
    }

    fn read(
        &self,
        _req: &fuser::Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let Some((b, handle, ahead)) = self
            .0
            .with_file(fh, |f| (f.backend.clone(), f.handle, f.ahead.clone()))
        else {
            return reply.error(Errno::EBADF);
        };
        if let Some(ahead) = ahead
            && let Ok(mut ra) = ahead.lock()
        {
            let src = FileSource {
                backend: &*b,
                handle,
                budget: &self.0.ahead_budget,
            };
            match ra.read(&src, offset, size.min(MAX_IO)) {
                Served::Data(d) => return reply.data(&d),
                Served::Failed(e) => return reply.error(Errno::from_i32(e)),
                Served::Direct => {}
            }
        }
        match b.call(Request::Read {
            handle,
            offset,
            size: size.min(MAX_IO),
        }) {
            Ok(Reply::Data(d)) => reply.data(&d),
            r => reply.error(failed(r)),
        }
    }

    fn write(
        &self,
        _req: &fuser::Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some((b, handle, ahead)) = self.0.with_file(fh, |f| {
            f.dirty = true;
            (f.backend.clone(), f.handle, f.ahead.clone())
        }) else {
            return reply.error(Errno::EBADF);
        };
        if let Some(ra) = ahead
            && let Ok(mut ra) = ra.lock()
        {
            // What was read ahead is older than this write.
            ra.clear();
        }
        // The kernel sends at most max_write (MAX_IO) bytes a call.
        let r = self.0.change(
            &*b,
            Request::Write {
                handle,
                offset,
                data: data.to_vec(),
            },
        );
        match r {
            Ok(Reply::Written(n)) => reply.written(n),
            // An owner out of reach: try again later, as OpenHarmony answers writes.
            Err(_) => reply.error(Errno::EAGAIN),
            _ if b.gone() => reply.error(Errno::EAGAIN),
            r => reply.error(failed(r)),
        }
    }

    fn flush(
        &self,
        _req: &fuser::Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        let Some((b, handle, dirty)) = self.0.with_file(fh, |f| {
            let d = std::mem::take(&mut f.dirty);
            (f.backend.clone(), f.handle, d)
        }) else {
            return reply.error(Errno::EBADF);
        };
        if !dirty {
            return reply.ok();
        }
        // A close of a written file returns once the data is on the owner's disk.
        match self.0.change(
            &*b,
            Request::Fsync {
                handle,
                datasync: true,
            },
        ) {
            Ok(Reply::Done) => reply.ok(),
            r => reply.error(failed(r)),
        }
    }

    fn fsync(
        &self,
        _req: &fuser::Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let Some((b, handle)) = self.0.with_file(fh, |f| {
            f.dirty = false;
            (f.backend.clone(), f.handle)
        }) else {
            return reply.error(Errno::EBADF);
        };
        match self.0.change(&*b, Request::Fsync { handle, datasync }) {
            Ok(Reply::Done) => reply.ok(),
            r => reply.error(failed(r)),
        }
    }

    fn release(
        &self,
        _req: &fuser::Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let f = self.0.files.lock().ok().and_then(|mut f| f.remove(&fh.0));
        if let Some(f) = f
            && !f.backend.gone()
        {
            let _ = f.backend.call(Request::Release { handle: f.handle });
        }
        reply.ok()
    }

    fn readdir(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let v = &self.0;
        let names: Vec<(u64, FileType, String)> = match ino.0 {
            ROOT => vec![
                (DEVICES, FileType::Directory, DEVICE_VIEW.into()),
                (MERGED, FileType::Directory, MERGE_VIEW.into()),
            ],
            i if v.merged_path(i).is_some() => {
                let merged = v.merged_path(i).unwrap_or_default();
                // A listing from its start asks the owners again; its later parts (the
                // kernel reads a few KiB at a time) come from the cached listing.
                let listed = v
                    .merge_sources(&merged)
                    .and_then(|src| Ok((v.merge_list(&src, offset == 0)?, src)));
                let (shown, sources) = match listed {
                    Ok(x) => x,
                    Err(e) => return reply.error(e),
                };
                let from = usize::try_from(offset).unwrap_or(usize::MAX);
                for (i, s) in shown.shown.iter().enumerate().skip(from) {
                    let Some(at) = Views::sources_of(&sources, s).into_iter().next() else {
                        continue;
                    };
                    let kind = match s.kind {
                        crate::merge::Kind::Dir => FileType::Directory,
                        crate::merge::Kind::File => FileType::RegularFile,
                    };
                    let child = v.merge_ino(&merged, s, &at);
                    if reply.add(INodeNo(child), i as u64 + 1, kind, &s.name) {
                        break;
                    }
                }
                return reply.ok();
            }
            DEVICES => std::iter::once(LOCAL.to_string())
                .chain(v.peers())
                .map(|n| (v.ino(&n, ""), FileType::Directory, n))
                .collect(),
            _ => {
                let n = match v.resolve(ino.0) {
                    Ok((n, _)) => n,
                    Err(e) => return reply.error(e),
                };
                let listed = match v.list(&n.view, &n.path, offset == 0) {
                    Ok(l) => l,
                    Err(e) => return reply.error(e),
                };
                let from = usize::try_from(offset).unwrap_or(usize::MAX);
                for (i, e) in listed.iter().enumerate().skip(from) {
                    let child = v.ino(&n.view, &proto::join(&n.path, &e.name));
                    if reply.add(
                        INodeNo(child),
                        i as u64 + 1,
                        fuse_kind(e.attr.kind),
                        &e.name,
                    ) {
                        break;
                    }
                }
                return reply.ok();
            }
        };
        for (i, (child, kind, name)) in names.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok()
    }
}

/// The mounted views; unmounted when dropped or by [`Mounted::unmount`].
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    at: PathBuf,
}

impl Mounted {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.at
    }

    /// Unmounts and waits (at most [`UNMOUNT_WAIT`]) for the FUSE threads to end.
    pub fn unmount(mut self) -> std::io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> std::io::Result<()> {
        let Some(s) = self.session.take() else {
            return Ok(());
        };
        // Detached here, by root: with auto_unmount fuser leaves the unmount to fusermount3's
        // helper, which waits for the session to end, which waits for the unmount.
        let _ = rustix::mount::unmount(&self.at, rustix::mount::UnmountFlags::DETACH);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(s.umount_and_join());
        });
        match rx.recv_timeout(UNMOUNT_WAIT) {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::other(format!(
                "the FUSE threads of {} did not end in {UNMOUNT_WAIT:?} (files still open)",
                self.at.display()
            ))),
        }
    }
}

/// Lazily detaches the views of a device whose daemon is dead (killed before it could
/// unmount them), so that removing its data dir never walks into a dead mount. Root only;
/// nothing mounted there is not an error.
pub fn detach_dead(data_dir: &Path, user: u32) {
    let _ = rustix::mount::unmount(
        mount_point(data_dir, user),
        rustix::mount::UnmountFlags::DETACH,
    );
}

/// How long an unmount waits for the FUSE threads (a file still open keeps a lazily
/// detached mount alive; the daemon does not wait for it to be closed).
pub const UNMOUNT_WAIT: Duration = Duration::from_secs(5);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The kernel's read-ahead on the views, in KiB: it offers FUSE only its default (128 KiB)
/// at INIT, so each read would ask a tenth of what one call moves; with this it sends reads
/// of up to [`MAX_IO`] (the max_pages that max_write gives) several at a time.
const KERNEL_READAHEAD_KB: u32 = 4 * MAX_IO / 1024;

/// Sets the mount's read-ahead (its backing device's `read_ahead_kb`, which root may write)
/// once INIT is done (a stat of the root waits for it). Best effort: without it reads are
/// only smaller.
fn widen_readahead(at: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(at) else {
        return;
    };
    let dev = m.dev();
    let bdi = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    if let Err(e) = std::fs::write(&bdi, KERNEL_READAHEAD_KB.to_string()) {
        tracing::debug!(tag = "hmdfs", "cannot widen the read-ahead ({bdi}): {e}");
    }
}

/// FUSE threads serving the views (reads in flight together, as read-ahead issues them).
const FUSE_THREADS: usize = 4;

/// Mounts `views` at `at` (made if missing; a stale mount left there by a daemon that died is
/// lazily unmounted first). Any user may look; the kernel checks permissions on the owner's
/// mode bits.
pub fn mount(views: Arc<Views>, at: &Path) -> std::io::Result<Mounted> {
    if std::fs::metadata(at).is_err() {
        // Either missing or a dead FUSE mount (ENOTCONN): detach what may be there.
        let _ = rustix::mount::unmount(at, rustix::mount::UnmountFlags::DETACH);
    }
    std::fs::create_dir_all(at)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("hmdfs".into()),
        fuser::MountOption::Subtype("hmdfs".into()),
        fuser::MountOption::DefaultPermissions,
        // fusermount3 unmounts it even when the daemon is killed (no dead mount is left).
        fuser::MountOption::AutoUnmount,
    ];
    config.acl = fuser::SessionACL::All;
    config.n_threads = Some(FUSE_THREADS);
    let session = fuser::spawn_mount(ViewsFs(views), at, &config)?;
    widen_readahead(at);
    Ok(Mounted {
        session: Some(session),
        at: at.to_path_buf(),
    })
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod fuse_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_carry_the_nodes_beneath() {
        let mut n = Nodes::default();
        let a = n.ino("p", "d");
        let b = n.ino("p", "d/x");
        let c = n.ino("p", "dx");
        let old = n.ino("p", "e/x");
        n.renamed("p", "d", "e");
        assert_eq!(n.ino("p", "e"), a);
        assert_eq!(n.ino("p", "e/x"), b);
        assert!(!n.by_ino.contains_key(&old), "the replaced node is gone");
        assert_eq!(n.ino("p", "dx"), c, "a name that only starts alike stays");
        assert_ne!(n.ino("q", "e"), a, "views are apart");
    }

    #[test]
    fn open_flags_map_to_the_protocols() {
        let o = |f: rustix::fs::OFlags| proto_flags(f.bits() as i32);
        use rustix::fs::OFlags as F;
        assert_eq!(o(F::RDONLY), flags::READ);
        assert_eq!(o(F::WRONLY | F::TRUNC), flags::WRITE | flags::TRUNC);
        assert_eq!(
            o(F::RDWR | F::APPEND | F::EXCL),
            flags::READ | flags::WRITE | flags::APPEND | flags::EXCL
        );
    }
}
