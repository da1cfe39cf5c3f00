//! A file-backed secret store with Secrets Manager's version and stage semantics.
//!
//! The whole store is one JSON file. Every change takes an exclusive lock on a sidecar
//! `<file>.lock`, reads the file, applies the change, writes a temporary file in the same
//! directory, fsyncs it and renames it over the original (then fsyncs the directory), so readers
//! never see a half-written file and two processes never lose each other's writes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    Claim, SecretDescription, SecretStore, SecretValue, StageMove, StoreError, VersionInfo,
    VersionSelector, VersionStages, password,
};
use crate::policy::PasswordPolicy;
use crate::stage::Stage;

/// AWS keeps at most this many versions; older unlabelled ones are dropped.
const MAX_VERSIONS: usize = 100;

/// A secret store in one local JSON file. Cheap to clone; clones share a cache of the last
/// file read (see `ReadCache`).
#[derive(Debug, Clone)]
pub struct LocalSecretStore {
    path: Arc<PathBuf>,
    lock_timeout: Duration,
    cache: Arc<ReadCache>,
}

/// The last store file parsed, with the exact text it was parsed from. A read still reads the
/// whole file (cheap: it is in the page cache) but parses it only when its text differs from
/// the cached text, which dominated a read's cost for large stores (a rotation makes about
/// twelve reads). Comparing the text, not file metadata, means no timestamp granularity, inode
/// reuse or in-place editor can make a stale state look current.
#[derive(Default)]
struct ReadCache(std::sync::Mutex<Option<(Vec<u8>, Arc<FileState>)>>);

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadCache")
    }
}

/// The largest store file read: a real store is a few MiB; a file this large is not one
/// (`/dev/zero` behind a symbolic link, a mistake).
const MAX_STORE_BYTES: u64 = 256 << 20;

/// How long a write waits for another process's file lock before saying so, and (by default,
/// see [`LocalSecretStore::with_lock_timeout`]) before giving up.
const LOCK_NOTICE_AFTER: Duration = Duration::from_secs(1);
const LOCK_GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// The prefix of our own "duplicate secret name" parse error (names a secret, never a value).
const DUPLICATE_NAME: &str = "the secret name ";
/// Symbolic links followed at most, as the kernel does.
const MAX_SYMLINKS: usize = 40;

#[derive(Default, Clone, Serialize, Deserialize)]
struct FileState {
    #[serde(default, deserialize_with = "unique_keys")]
    secrets: BTreeMap<String, StoredSecret>,
}

/// A JSON object into a map, refusing a key that appears twice (serde's maps keep the last).
fn unique_keys<'de, D>(d: D) -> Result<BTreeMap<String, StoredSecret>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = BTreeMap<String, StoredSecret>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of secrets by name")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = m.next_key::<String>()? {
                if out.contains_key(&name) {
                    return Err(serde::de::Error::custom(format!(
                        "{DUPLICATE_NAME}{name:?} appears twice"
                    )));
                }
                let secret = m.next_value()?;
                out.insert(name, secret);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique)
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredSecret {
    arn: String,
    #[serde(default)]
    rotation_enabled: Option<bool>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    versions: Vec<StoredVersion>,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredVersion {
    id: String,
    #[serde(default)]
    stages: Vec<String>,
    /// `None` for the value-less stub that RotateSecret creates.
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    created: u64,
}

impl StoredSecret {
    fn version(&self, id: &str) -> Option<&StoredVersion> {
        self.versions.iter().find(|v| v.id == id)
    }
    fn version_mut(&mut self, id: &str) -> Option<&mut StoredVersion> {
        self.versions.iter_mut().find(|v| v.id == id)
    }
    fn holder(&self, stage: Stage) -> Option<&str> {
        self.versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == stage.as_str()))
            .map(|v| v.id.as_str())
    }
    fn detach(&mut self, stage: Stage) {
        for v in &mut self.versions {
            v.stages.retain(|s| s != stage.as_str());
        }
    }
    /// Attaches `stage` to `id`, taking it from wherever it was; moving `AWSCURRENT` makes the
    /// version that held it `AWSPREVIOUS`.
    fn attach(&mut self, stage: Stage, id: &str) {
        let old = self.holder(stage).map(str::to_string);
        if old.as_deref() == Some(id) {
            return;
        }
        self.detach(stage);
        if let Some(v) = self.version_mut(id) {
            v.stages.push(stage.as_str().to_string());
        }
        if stage == Stage::Current
            && let Some(old) = old
        {
            self.detach(Stage::Previous);
            if let Some(v) = self.version_mut(&old) {
                v.stages.push(Stage::Previous.as_str().to_string());
            }
        }
    }
    fn prune(&mut self) {
        while self.versions.len() > MAX_VERSIONS {
            let Some(i) = self.versions.iter().position(|v| v.stages.is_empty()) else {
                break;
            };
            self.versions.remove(i);
        }
    }
    fn describe(&self, name: &str) -> SecretDescription {
        SecretDescription {
            arn: self.arn.clone(),
            name: name.to_string(),
            rotation_enabled: self.rotation_enabled,
            // As DescribeSecret: only versions that carry a label.
            versions: self
                .versions
                .iter()
                .filter(|v| !v.stages.is_empty())
                .map(|v| (v.id.clone(), VersionStages::from_labels(&v.stages)))
                .collect(),
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// The `engine` key of a secret value, when it is a short string (it is shown, so a value that
/// is not a database secret, or holds something else under that key, shows nothing).
fn engine_of(value: &str) -> Option<String> {
    // Read as rotations read values: a number beyond f64 or a lone surrogate elsewhere in it
    // does not hide its engine.
    let v = crate::secret::DatabaseSecret::parse(&SecretString::from(value.to_string())).ok()?;
    let engine = v.engine()?;
    (engine.len() <= 64 && engine.chars().all(|c| c.is_ascii_graphic())).then(|| engine.to_string())
}

/// What [`LocalSecretStore::put_current`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new secret.
    Created {
        /// Its ARN.
        arn: String,
        /// Its first version, `AWSCURRENT`.
        version: String,
    },
    /// A new `AWSCURRENT` version of an existing secret.
    NewVersion {
        /// The secret's ARN.
        arn: String,
        /// The new version.
        version: String,
    },
}

/// One secret of a local store, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSummary {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// The `engine` key of the `AWSCURRENT` value, when it is a plain string.
    pub engine: Option<String>,
    /// When the `AWSCURRENT` version was stored (seconds since the Unix epoch; 0 if unknown):
    /// the last rotation, or the last `put`.
    pub current_since: Option<u64>,
    /// The version a rotation in flight put `AWSPENDING` on.
    pub rotation_in_flight: Option<String>,
    /// `RotationEnabled`.
    pub rotation_enabled: Option<bool>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Versions kept, labelled or not.
    pub versions: usize,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Secrets Manager's rule for the name of a new secret (an ARN names an existing one).
fn new_secret_name(id: &str) -> Result<(), StoreError> {
    if id.starts_with("arn:") {
        return Err(StoreError::NotFound(format!(
            "no secret has the ARN {id}; name a new secret by its name"
        )));
    }
    let valid = (1..=512).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b));
    if !valid {
        return Err(StoreError::InvalidRequest(
            "a secret name is 1 to 512 characters: letters, digits and /_+=.@-".into(),
        ));
    }
    Ok(())
}

/// A blocking worker of the store that panicked or was cancelled.
fn worker_failed(e: tokio::task::JoinError) -> StoreError {
    StoreError::Service {
        operation: "local store",
        message: format!("worker task failed: {e}"),
        source: None,
    }
}

fn abandoned_error() -> StoreError {
    StoreError::Timeout("local store write (abandoned by its caller before it changed anything)")
}

/// FNV-1a, 64 bits: a stable, dependency-free file name for a secret's claim.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn not_found(secret_id: &str) -> StoreError {
    StoreError::NotFound(format!(
        "Secrets Manager can't find the specified secret {secret_id}"
    ))
}

impl FileState {
    fn find(&self, secret_id: &str) -> Result<(&String, &StoredSecret), StoreError> {
        self.secrets
            .iter()
            .find(|(name, s)| name.as_str() == secret_id || s.arn == secret_id)
            .ok_or_else(|| not_found(secret_id))
    }
    fn find_mut(&mut self, secret_id: &str) -> Result<&mut StoredSecret, StoreError> {
        self.secrets
            .iter_mut()
            .find(|(name, s)| name.as_str() == secret_id || s.arn == secret_id)
            .map(|(_, s)| s)
            .ok_or_else(|| not_found(secret_id))
    }
}

impl LocalSecretStore {
    /// A store kept in `path` (created on first write).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalSecretStore {
            path: Arc::new(path.into()),
            lock_timeout: LOCK_GIVE_UP_AFTER,
            cache: Arc::default(),
        }
    }

    /// How long a write waits for the store's lock, held by another writer, before failing
    /// (30 s by default). Reads never wait.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: self.path.display().to_string(),
            action,
            source,
        }
    }

    /// The file the store really lives in: a symbolic link is followed (and written through),
    /// so the link stays a link and its target gets every update.
    fn resolved(&self) -> Result<PathBuf, StoreError> {
        let mut path = (*self.path).clone();
        for _ in 0..MAX_SYMLINKS {
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = fs::read_link(&path).map_err(self.io("read symbolic link"))?;
                    path = match path.parent() {
                        Some(dir) if target.is_relative() => dir.join(target),
                        _ => target,
                    };
                }
                // A device, FIFO or directory would be replaced by the first write, or hang
                // or exhaust the reads.
                Ok(m) if !m.is_file() => {
                    return Err(StoreError::Io {
                        path: path.display().to_string(),
                        action: "use as the store",
                        source: std::io::Error::other(
                            "not a regular file (a device, a FIFO or a directory)",
                        ),
                    });
                }
                _ => return Ok(path),
            }
        }
        Err(StoreError::Io {
            path: self.path.display().to_string(),
            action: "follow symbolic links",
            source: std::io::Error::other("too many levels of symbolic links"),
        })
    }

    /// The store's state: the cached parse when the file's text is the one last parsed.
    fn read_cached(&self, file: &Path) -> Result<Arc<FileState>, StoreError> {
        let mut bytes = Vec::new();
        match File::open(file) {
            Ok(f) => {
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(f, MAX_STORE_BYTES + 1),
                    &mut bytes,
                )
                .map_err(self.io("read"))?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Arc::default()),
            Err(e) => return Err(self.io("read")(e)),
        }
        if bytes.len() as u64 > MAX_STORE_BYTES {
            return Err(StoreError::Io {
                path: file.display().to_string(),
                action: "read",
                source: std::io::Error::other(format!(
                    "the store is larger than {} MiB, more than any store of secrets",
                    MAX_STORE_BYTES >> 20
                )),
            });
        }
        let mut cache = self.cache.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((text, state)) = cache.as_ref()
            && *text == bytes
        {
            return Ok(Arc::clone(state));
        }
        let state = Arc::new(self.parse_state(&bytes)?);
        *cache = Some((bytes, Arc::clone(&state)));
        Ok(state)
    }

    /// Parses and checks the store file's text.
    fn parse_state(&self, bytes: &[u8]) -> Result<FileState, StoreError> {
        let state: FileState = match bytes {
            [] => FileState::default(),
            bytes => serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
                path: self.path.display().to_string(),
                reason: if e.to_string().starts_with(DUPLICATE_NAME) {
                    // Our own message: names a secret, never a value. (Serde's own messages
                    // can quote a value, so only this prefix is passed through.)
                    format!("{e}")
                } else {
                    format!(
                        "not a store file (line {}, column {})",
                        e.line(),
                        e.column()
                    )
                },
            })?,
        };
        let mut arns = std::collections::BTreeSet::new();
        for (name, secret) in &state.secrets {
            if !arns.insert(secret.arn.as_str()) {
                return Err(StoreError::Corrupt {
                    path: self.path.display().to_string(),
                    reason: format!(
                        "two secrets share the ARN of secret {name:?}; every secret needs its own ARN"
                    ),
                });
            }
        }
        // A secret is found by name or ARN: a name that is another secret's ARN would make one
        // id mean two secrets (a claim taken on one, the work done on the other).
        for (name, secret) in &state.secrets {
            if secret.arn != *name && arns.contains(name.as_str()) {
                return Err(StoreError::Corrupt {
                    path: self.path.display().to_string(),
                    reason: format!(
                        "the name of secret {name:?} is another secret's ARN, or its ARN another secret's name; names and ARNs must not overlap"
                    ),
                });
            }
        }
        Ok(state)
    }

    /// Writes `state` to a temporary file, fsyncs it and renames it over `file`; the rename is
    /// the commit point, and nothing is renamed once `abandoned` is set.
    fn write_state(
        &self,
        file: &Path,
        state: &FileState,
        abandoned: &AtomicBool,
    ) -> Result<Vec<u8>, StoreError> {
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let bytes = serde_json::to_vec_pretty(state).expect("store state serialises");
        let mut tmp = tempfile::Builder::new()
            .prefix(".rotation-store-")
            .tempfile_in(&dir)
            .map_err(self.io("create temporary file"))?;
        tmp.write_all(&bytes).map_err(self.io("write"))?;
        tmp.as_file().sync_all().map_err(self.io("fsync"))?;
        if abandoned.load(Ordering::SeqCst) {
            return Err(abandoned_error());
        }
        tmp.persist(file).map_err(|e| self.io("rename")(e.error))?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(bytes)
    }

    /// Takes `file`'s exclusive lock, waiting for another writer at most the lock timeout, and
    /// saying so after [`LOCK_NOTICE_AFTER`].
    fn lock_exclusive(&self, file: &Path, abandoned: &AtomicBool) -> Result<File, StoreError> {
        let mut lock_path = file.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(self.io("open lock file"))?;
        let started = Instant::now();
        let mut told = false;
        loop {
            match lock.try_lock() {
                Ok(()) => return Ok(lock),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(self.io("lock")(e)),
            }
            if abandoned.load(Ordering::SeqCst) {
                return Err(abandoned_error());
            }
            let waited = started.elapsed();
            if waited >= self.lock_timeout {
                return Err(StoreError::Io {
                    path: self.path.display().to_string(),
                    action: "wait for the store's lock",
                    source: std::io::Error::new(
                        ErrorKind::TimedOut,
                        format!(
                            "gave up after {:.1} s: {} is held by another writer (another rotate command, or a stuck process)",
                            waited.as_secs_f64(),
                            Path::new(&lock_path).display(),
                        ),
                    ),
                });
            }
            if !told && waited >= LOCK_NOTICE_AFTER {
                told = true;
                tracing::warn!(
                    lock = %Path::new(&lock_path).display(),
                    "waiting for the local store's lock, held by another process"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `f` on the store's state; with `write`, under the file lock, writing the state back.
    /// Reads take no lock and create nothing: writes replace the file atomically, so a reader
    /// always sees a whole state.
    /// `abandoned` is set when the caller stopped waiting (its deadline passed): a write then
    /// gives up, before it changes anything, instead of landing after a reported failure.
    fn with_state<R>(
        &self,
        abandoned: &AtomicBool,
        f: impl FnOnce(&mut FileState) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let file = self.resolved()?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(self.io("create directory"))?;
        }
        let lock = self.lock_exclusive(&file, abandoned)?;
        let cached = self.read_cached(&file)?;
        let mut state = FileState::clone(&cached);
        let out = f(&mut state)?;
        let bytes = self.write_state(&file, &state, abandoned)?;
        // The next read finds exactly this text: it need not parse what was just written.
        *self.cache.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((bytes, Arc::new(state)));
        drop(lock);
        Ok(out)
    }

    /// Runs `f` on the store's state without a lock (the file is replaced atomically, so a
    /// read sees one whole version of it), sharing the cached parse.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&FileState) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let file = this.resolved()?;
            let state = this.read_cached(&file)?;
            f(&state)
        })
        .await
        .map_err(worker_failed)?
    }

    /// Runs `f` on the store's state under the write lock and writes the result.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut FileState) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        /// Marks the operation abandoned when its future is dropped before it finished.
        struct Abandon(Arc<AtomicBool>, bool);
        impl Drop for Abandon {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
        }
        let this = self.clone();
        let mut guard = Abandon(Arc::new(AtomicBool::new(false)), false);
        let abandoned = guard.0.clone();
        let result = tokio::task::spawn_blocking(move || this.with_state(&abandoned, f))
            .await
            .map_err(worker_failed);
        guard.1 = true;
        result?
    }

    /// `CreateSecret`: a new secret whose first version is `AWSCURRENT`. Returns the ARN.
    pub async fn create_secret(
        &self,
        name: &str,
        value: &SecretString,
    ) -> Result<String, StoreError> {
        let name = name.to_string();
        let value = value.expose_secret().to_string();
        self.run(move |state| {
            if state.secrets.contains_key(&name) {
                return Err(StoreError::InvalidRequest(format!(
                    "a secret named {name} already exists"
                )));
            }
            let arn = format!(
                "arn:local:secretsmanager:local:000000000000:secret:{name}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            );
            state.secrets.insert(
                name,
                StoredSecret {
                    arn: arn.clone(),
                    rotation_enabled: Some(true),
                    tags: BTreeMap::new(),
                    versions: vec![StoredVersion {
                        id: uuid::Uuid::new_v4().to_string(),
                        stages: vec![Stage::Current.as_str().into()],
                        value: Some(value),
                        created: now(),
                    }],
                },
            );
            Ok(arn)
        })
        .await
    }

    /// Sets `RotationEnabled` (`None`: the key is absent, as for a secret never rotated).
    pub async fn set_rotation_enabled(
        &self,
        secret_id: &str,
        enabled: Option<bool>,
    ) -> Result<(), StoreError> {
        let id = secret_id.to_string();
        self.run(move |state| {
            state.find_mut(&id)?.rotation_enabled = enabled;
            Ok(())
        })
        .await
    }

    /// Sets a tag on a secret.
    pub async fn tag(&self, secret_id: &str, key: &str, value: &str) -> Result<(), StoreError> {
        let (id, k, v) = (secret_id.to_string(), key.to_string(), value.to_string());
        self.run(move |state| {
            state.find_mut(&id)?.tags.insert(k, v);
            Ok(())
        })
        .await
    }

    /// What `RotateSecret` does before invoking the function: refuse when another rotation is
    /// in flight, then attach `AWSPENDING` to a new value-less version `token`.
    pub async fn start_rotation(&self, secret_id: &str, token: &str) -> Result<(), StoreError> {
        let (id, token) = (secret_id.to_string(), token.to_string());
        self.run(move |state| {
            let secret = state.find_mut(&id)?;
            let current = secret.holder(Stage::Current).map(str::to_string);
            if let Some(p) = secret.holder(Stage::Pending)
                && Some(p) != current.as_deref()
                && p != token
            {
                return Err(StoreError::InvalidRequest(
                    "A previous rotation isn't complete. That rotation will be reattempted.".into(),
                ));
            }
            if secret.version(&token).is_none() {
                secret.versions.push(StoredVersion {
                    id: token.clone(),
                    stages: vec![],
                    value: None,
                    created: now(),
                });
            }
            secret.attach(Stage::Pending, &token);
            secret.prune();
            Ok(())
        })
        .await
    }

    async fn put_value_checked(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        stages: &[Stage],
        _rotation_token: Option<&str>,
        check: impl FnOnce(&mut FileState) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        if !(32..=64).contains(&token.len()) {
            return Err(StoreError::InvalidRequest(
                "ClientRequestToken must be 32-64 characters long.".into(),
            ));
        }
        let (id, token) = (secret_id.to_string(), token.to_string());
        let value = value.expose_secret().to_string();
        let stages: Vec<Stage> = if stages.is_empty() {
            vec![Stage::Current]
        } else {
            stages.to_vec()
        };
        self.run(move |state| {
            check(state)?;
            let secret = state.find_mut(&id)?;
            match secret.version_mut(&token) {
                Some(v) => match &v.value {
                    Some(existing) if *existing == value => return Ok(()),
                    Some(_) => return Err(StoreError::VersionExists(token)),
                    None => v.value = Some(value),
                },
                None => secret.versions.push(StoredVersion {
                    id: token.clone(),
                    stages: vec![],
                    value: Some(value),
                    created: now(),
                }),
            }
            for stage in stages {
                secret.attach(stage, &token);
            }
            secret.prune();
            Ok(())
        })
        .await
    }

    /// The claim on one secret: an exclusive lock on a file beside the store named after the
    /// secret's ARN, taken without waiting. The kernel drops it when the process dies.
    fn claim_blocking(&self, arn: &str) -> Result<Claim, StoreError> {
        let file = self.resolved()?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(self.io("create directory"))?;
        }
        let mut claim_path = file.as_os_str().to_owned();
        claim_path.push(format!(".claim-{:016x}", fnv1a(arn.as_bytes())));
        let claim = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&claim_path)
            .map_err(self.io("open claim file"))?;
        match claim.try_lock() {
            Ok(()) => Ok(Claim::held(claim)),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::Busy(format!(
                "another process is rotating secret {arn} (it holds {})",
                Path::new(&claim_path).display()
            ))),
            Err(fs::TryLockError::Error(e)) => Err(self.io("lock claim file")(e)),
        }
    }

    /// Stores `value` as the secret's new `AWSCURRENT` (the version that held it becomes
    /// `AWSPREVIOUS`), or creates the secret when there is none by that name; one write.
    /// Refused with [`StoreError::Conflict`] while a rotation is in flight (a new current value
    /// under it would be overwritten by its finishSecret), and unless `expected_current` is
    /// still the `AWSCURRENT` version (`None`: the secret must not exist, or have no
    /// `AWSCURRENT` version, which the put then gives it), so a value built
    /// from what was read before never overwrites a rotation (or another put) made meanwhile.
    pub async fn put_current(
        &self,
        secret_id: &str,
        value: &SecretString,
        expected_current: Option<&str>,
    ) -> Result<PutOutcome, StoreError> {
        let id = secret_id.to_string();
        // A name no secret could have is refused before the store is locked (which creates its
        // directory and lock file): a refused put leaves no trace.
        let named = id.clone();
        if !self
            .read(move |state| Ok(state.find(&named).is_ok()))
            .await?
        {
            new_secret_name(&id)?;
        }
        let value = value.expose_secret().to_string();
        let expected = expected_current.map(str::to_string);
        self.run(move |state| {
            let found = state.find(&id).ok();
            let exists = found.is_some();
            let now_current =
                found.and_then(|(_, s)| s.holder(Stage::Current).map(str::to_string));
            // A secret without an AWSCURRENT version reads as no secret (`expected` None):
            // the put gives it one, built from nothing but what the caller gave.
            let repair = exists && now_current.is_none() && expected.is_none();
            if !repair && (exists != expected.is_some() || (exists && now_current != expected)) {
                return Err(StoreError::Conflict(format!(
                    "secret {id} changed while its new value was prepared (a rotation or another put); run the command again"
                )));
            }
            if !exists {
                new_secret_name(&id)?;
                let arn = format!(
                    "arn:local:secretsmanager:local:000000000000:secret:{id}-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..6]
                );
                let version = uuid::Uuid::new_v4().to_string();
                state.secrets.insert(
                    id,
                    StoredSecret {
                        arn: arn.clone(),
                        rotation_enabled: Some(true),
                        tags: BTreeMap::new(),
                        versions: vec![StoredVersion {
                            id: version.clone(),
                            stages: vec![Stage::Current.as_str().into()],
                            value: Some(value),
                            created: now(),
                        }],
                    },
                );
                return Ok(PutOutcome::Created { arn, version });
            }
            let secret = state.find_mut(&id)?;
            let current = secret.holder(Stage::Current).map(str::to_string);
            if let Some(p) = secret.holder(Stage::Pending)
                && Some(p) != current.as_deref()
            {
                return Err(StoreError::Conflict(format!(
                    "a rotation of secret {id} is in flight (AWSPENDING on version {p}); resume or abort it first"
                )));
            }
            // AWSPENDING left on the current version by a finished rotation must not stay on
            // it once it stops being current: that would read as a rotation in flight.
            if current.is_some() && secret.holder(Stage::Pending) == current.as_deref() {
                secret.detach(Stage::Pending);
            }
            let version = uuid::Uuid::new_v4().to_string();
            secret.versions.push(StoredVersion {
                id: version.clone(),
                stages: vec![],
                value: Some(value),
                created: now(),
            });
            secret.attach(Stage::Current, &version);
            secret.prune();
            Ok(PutOutcome::NewVersion {
                arn: secret.arn.clone(),
                version,
            })
        })
        .await
    }

    /// What `rotate list` shows of every secret: names, labels and dates, never a value.
    pub async fn summaries(&self) -> Result<Vec<SecretSummary>, StoreError> {
        self.read(|state| {
            Ok(state
                .secrets
                .iter()
                .map(|(name, s)| {
                    let current = s.holder(Stage::Current).and_then(|id| s.version(id));
                    SecretSummary {
                        name: name.clone(),
                        arn: s.arn.clone(),
                        engine: current.and_then(|v| v.value.as_deref()).and_then(engine_of),
                        current_since: current.map(|v| v.created),
                        rotation_in_flight: s
                            .describe(name)
                            .rotation_in_flight()
                            .map(str::to_string),
                        rotation_enabled: s.rotation_enabled,
                        tags: s.tags.clone(),
                        versions: s.versions.len(),
                    }
                })
                .collect())
        })
        .await
    }

    /// Names of all secrets.
    pub async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.read(|state| Ok(state.secrets.keys().cloned().collect()))
            .await
    }
}

impl SecretStore for LocalSecretStore {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, StoreError> {
        let id = secret_id.to_string();
        self.read(move |state| {
            let (name, s) = state.find(&id)?;
            Ok(s.describe(name))
        })
        .await
    }

    async fn get_value(
        &self,
        secret_id: &str,
        which: VersionSelector<'_>,
    ) -> Result<SecretValue, StoreError> {
        let id = secret_id.to_string();
        let version = which.version_id.map(str::to_string);
        let stage = which.stage;
        self.read(move |state| {
            let (_, s) = state.find(&id)?;
            let v = match (&version, stage) {
                (Some(vid), _) => s.version(vid).ok_or_else(|| {
                    StoreError::NotFound(format!(
                        "Secrets Manager can't find the specified secret value for VersionId: {vid}"
                    ))
                })?,
                (None, stage) => {
                    let stage = stage.unwrap_or(Stage::Current);
                    let holder = s.holder(stage).ok_or_else(|| {
                        StoreError::NotFound(format!(
                            "Secrets Manager can't find the specified secret value for staging label: {stage}"
                        ))
                    })?;
                    s.version(holder).expect("holder exists")
                }
            };
            if let (Some(stage), Some(_)) = (stage, &version)
                && !v.stages.iter().any(|l| l == stage.as_str())
            {
                return Err(StoreError::InvalidRequest(
                    "You provided a VersionStage that is not associated to the provided VersionId."
                        .into(),
                ));
            }
            let value = v.value.clone().ok_or_else(|| {
                StoreError::NotFound(format!(
                    "Secrets Manager can't find the specified secret value for VersionId: {}",
                    v.id
                ))
            })?;
            Ok(SecretValue {
                version_id: v.id.clone(),
                stages: VersionStages::from_labels(&v.stages),
                value: SecretString::from(value),
                created: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(v.created)),
            })
        })
        .await
    }

    async fn put_value(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        stages: &[Stage],
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        self.put_value_checked(secret_id, token, value, stages, rotation_token, |_| Ok(()))
            .await
    }

    async fn update_stage(&self, secret_id: &str, change: StageMove<'_>) -> Result<(), StoreError> {
        let id = secret_id.to_string();
        let stage = change.stage;
        let move_to = change.move_to.map(str::to_string);
        let remove_from = change.remove_from.map(str::to_string);
        self.run(move |state| {
            let secret = state.find_mut(&id)?;
            for vid in move_to.iter().chain(remove_from.iter()) {
                if secret.version(vid).is_none() {
                    return Err(StoreError::InvalidRequest(format!("Not a valid version: {vid}")));
                }
            }
            if let Some(from) = &remove_from {
                let has = secret
                    .version(from)
                    .is_some_and(|v| v.stages.iter().any(|s| s == stage.as_str()));
                if !has {
                    return Err(StoreError::InvalidRequest(format!(
                        "Version stage {stage} not found in version {from}"
                    )));
                }
            }
            let holder = secret.holder(stage).map(str::to_string);
            match &move_to {
                Some(to) => {
                    if let Some(h) = &holder
                        && h != to
                        && remove_from.as_deref() != Some(h.as_str())
                    {
                        return Err(StoreError::InvalidRequest(format!(
                            "The parameter RemoveFromVersionId can't be empty. Staging label {stage} is currently attached to version {h}"
                        )));
                    }
                    secret.attach(stage, to);
                }
                None => {
                    if let Some(from) = &remove_from
                        && let Some(v) = secret.version_mut(from)
                    {
                        v.stages.retain(|s| s != stage.as_str());
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, StoreError> {
        password::generate(policy).map_err(|e| StoreError::Service {
            operation: "GetRandomPassword",
            message: e.to_string(),
            source: Some(Box::new(e)),
        })
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let id = secret_id.to_string();
        self.read(move |state| {
            let (_, s) = state.find(&id)?;
            // Versions are kept in the order they were made: newest last.
            Ok(s.versions
                .iter()
                .rev()
                .map(|v| VersionInfo {
                    id: v.id.clone(),
                    stages: VersionStages::from_labels(&v.stages),
                })
                .collect())
        })
        .await
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        built_from: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        let (id, tok, from) = (
            secret_id.to_string(),
            token.to_string(),
            built_from.to_string(),
        );
        // The checks and the write happen under one lock: a second writer fails, and so does
        // a pending value built from an AWSCURRENT that a put has replaced since.
        let check = move |state: &mut FileState| {
            let secret = state.find_mut(&id)?;
            let current = secret.holder(Stage::Current).map(str::to_string);
            match secret.holder(Stage::Pending) {
                Some(p) if Some(p) != current.as_deref() && p != tok => {
                    return Err(StoreError::Conflict(format!(
                        "a rotation of secret {} is already in flight (version {p})",
                        secret.arn
                    )));
                }
                _ => {}
            }
            // A retry of a write that landed (this token already holds the value) is no change.
            let written = secret.version_mut(&tok).is_some_and(|v| v.value.is_some());
            if current.as_deref() != Some(from.as_str()) && !written {
                return Err(StoreError::CurrentMoved {
                    secret: secret.arn.clone(),
                    built_from: from,
                    now: current.unwrap_or_else(|| "-".into()),
                });
            }
            Ok(())
        };
        self.put_value_checked(
            secret_id,
            token,
            value,
            &[Stage::Pending],
            rotation_token,
            check,
        )
        .await
    }

    async fn claim(&self, arn: &str) -> Result<Claim, StoreError> {
        let this = self.clone();
        let arn = arn.to_string();
        tokio::task::spawn_blocking(move || this.claim_blocking(&arn))
            .await
            .map_err(worker_failed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "11111111111111111111111111111111";
    const T2: &str = "22222222222222222222222222222222";

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_string())
    }

    async fn stages(store: &LocalSecretStore, id: &str, v: &str) -> Vec<Stage> {
        store.describe(id).await.unwrap().versions[v].stages.clone()
    }

    #[tokio::test]
    async fn rotation_stub_then_put_then_promote() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("s.json"));
        store.create_secret("app", &s("v1")).await.unwrap();
        let v1 = store
            .describe("app")
            .await
            .unwrap()
            .version_with(Stage::Current)
            .unwrap()
            .to_string();
        store.start_rotation("app", T1).await.unwrap();
        let e = store
            .get_value("app", VersionSelector::version_at(T1, Stage::Pending))
            .await
            .unwrap_err();
        assert!(e.is_not_found(), "a value-less stub reads as not found");
        store
            .put_value("app", T1, &s("v2"), &[Stage::Pending], None)
            .await
            .unwrap();
        // Same token, same value: no-op. Different value: refused.
        store
            .put_value("app", T1, &s("v2"), &[Stage::Pending], None)
            .await
            .unwrap();
        assert!(matches!(
            store
                .put_value("app", T1, &s("other"), &[Stage::Pending], None)
                .await,
            Err(StoreError::VersionExists(_))
        ));
        // Moving AWSCURRENT needs RemoveFromVersionId.
        assert!(matches!(
            store
                .update_stage(
                    "app",
                    StageMove {
                        stage: Stage::Current,
                        move_to: Some(T1),
                        remove_from: None
                    }
                )
                .await,
            Err(StoreError::InvalidRequest(_))
        ));
        store
            .update_stage(
                "app",
                StageMove {
                    stage: Stage::Current,
                    move_to: Some(T1),
                    remove_from: Some(&v1),
                },
            )
            .await
            .unwrap();
        assert_eq!(stages(&store, "app", &v1).await, vec![Stage::Previous]);
        assert_eq!(
            stages(&store, "app", T1).await,
            vec![Stage::Current, Stage::Pending]
        );
        // A second rotation can start: AWSPENDING sits on the current version.
        store.start_rotation("app", T2).await.unwrap();
        assert_eq!(stages(&store, "app", T1).await, vec![Stage::Current]);
        // And a third cannot while T2 is in flight.
        assert!(
            store
                .start_rotation("app", &T1.replace('1', "3"))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn get_value_checks_stage_against_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("s.json"));
        store.create_secret("app", &s("v1")).await.unwrap();
        store
            .put_value("app", T1, &s("v2"), &[Stage::Pending], None)
            .await
            .unwrap();
        assert!(matches!(
            store
                .get_value("app", VersionSelector::version_at(T1, Stage::Current))
                .await,
            Err(StoreError::InvalidRequest(_))
        ));
        let v = store
            .get_value("app", VersionSelector::stage(Stage::Pending))
            .await
            .unwrap();
        assert_eq!(v.value.expose_secret(), "v2");
        assert!(
            store
                .get_value("app", VersionSelector::stage(Stage::Previous))
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(store.describe("nope").await.unwrap_err().is_not_found());
        assert!(matches!(
            store
                .put_value("app", "short", &s("x"), &[Stage::Pending], None)
                .await,
            Err(StoreError::InvalidRequest(_))
        ));
    }

    #[tokio::test]
    async fn corrupt_file_is_reported_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        fs::write(&path, "{\"secrets\": hunter2").unwrap();
        let store = LocalSecretStore::new(&path);
        let e = store.describe("x").await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }));
        assert!(!e.to_string().contains("hunter2"));
    }

    /// The names in `dir`, recursively, with each file's length and modification time.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let mut out = vec![];
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            out.push((entry.path(), meta.len(), meta.modified().ok()));
            if meta.is_dir() {
                out.extend(snapshot(&entry.path()));
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_symlinked_store_writes_through_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/s.json");
        LocalSecretStore::new(&target)
            .create_secret("first", &s("v0"))
            .await
            .unwrap();
        // An absolute link, and a relative link to that link.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let chained = dir.path().join("chained.json");
        std::os::unix::fs::symlink("link.json", &chained).unwrap();
        for (path, name) in [(&link, "via-link"), (&chained, "via-chain")] {
            let store = LocalSecretStore::new(path);
            store.create_secret(name, &s("v1")).await.unwrap();
            store
                .put_value(name, T1, &s("v2"), &[Stage::Pending], None)
                .await
                .unwrap();
            assert!(
                fs::symlink_metadata(path).unwrap().file_type().is_symlink(),
                "{name}: the link stays a link"
            );
        }
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let direct = LocalSecretStore::new(&target);
        assert_eq!(
            direct.list().await.unwrap(),
            vec!["first", "via-chain", "via-link"],
            "the target got every update"
        );
        assert_eq!(
            stages(&direct, "via-link", T1).await,
            vec![Stage::Pending],
            "and the put through the link"
        );
        // The lock sits beside the target, and no stray file was left beside the links.
        assert!(dir.path().join("real/s.json.lock").exists());
        let beside_links: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "real")
            .collect();
        assert_eq!(beside_links.len(), 2, "{beside_links:?}");

        // A dangling link: the first write creates the target, the link stays.
        let dangling = dir.path().join("later.json");
        std::os::unix::fs::symlink("real/later.json", &dangling).unwrap();
        LocalSecretStore::new(&dangling)
            .create_secret("x", &s("v"))
            .await
            .unwrap();
        assert!(
            fs::symlink_metadata(&dangling)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            LocalSecretStore::new(dir.path().join("real/later.json"))
                .list()
                .await
                .unwrap(),
            vec!["x"]
        );
    }

    async fn read_everything(store: &LocalSecretStore, id: &str) -> Vec<bool> {
        vec![
            store.describe(id).await.is_ok(),
            store
                .get_value(id, VersionSelector::stage(Stage::Current))
                .await
                .is_ok(),
            store.list().await.is_ok(),
            store.list_versions(id).await.is_ok(),
        ]
    }

    #[tokio::test]
    async fn reading_creates_no_files() {
        let dir = tempfile::tempdir().unwrap();
        // The store does not exist, nor does its directory.
        let store = LocalSecretStore::new(dir.path().join("missing/sub/s.json"));
        assert_eq!(
            read_everything(&store, "app").await,
            [false, false, true, false]
        );
        assert!(store.list().await.unwrap().is_empty());
        assert!(
            store.describe("app").await.unwrap_err().is_not_found(),
            "a missing store holds no secrets"
        );
        assert!(
            snapshot(dir.path()).is_empty(),
            "{:?}",
            snapshot(dir.path())
        );

        // The store exists (its lock file removed after the write that made it).
        let path = dir.path().join("s.json");
        let store = LocalSecretStore::new(&path);
        store.create_secret("app", &s("v1")).await.unwrap();
        store
            .put_value("app", T1, &s("v2"), &[Stage::Pending], None)
            .await
            .unwrap();
        fs::remove_file(dir.path().join("s.json.lock")).unwrap();
        let before = snapshot(dir.path());
        assert_eq!(before.len(), 1);
        assert_eq!(read_everything(&store, "app").await, [true; 4]);
        assert_eq!(
            read_everything(&store, "nope").await,
            [false, false, true, false]
        );
        assert_eq!(
            snapshot(dir.path()),
            before,
            "no lock, temporary or other file"
        );
    }

    #[tokio::test]
    async fn duplicate_names_and_arns_are_corrupt_and_named_without_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let store = LocalSecretStore::new(&path);
        let version = |pw: &str| {
            format!(r#"{{"id":"v1","stages":["AWSCURRENT"],"value":"{{\"password\":\"{pw}\"}}"}}"#)
        };
        let cases = [
            (
                format!(
                    r#"{{"secrets":{{"app":{{"arn":"arn:1","versions":[{}]}},"app":{{"arn":"arn:2","versions":[{}]}}}}}}"#,
                    version("Canary-Dup-1"),
                    version("Canary-Dup-2")
                ),
                "\"app\" appears twice",
            ),
            (
                format!(
                    r#"{{"secrets":{{"app":{{"arn":"arn:same","versions":[{}]}},"other":{{"arn":"arn:same","versions":[{}]}}}}}}"#,
                    version("Canary-Dup-3"),
                    version("Canary-Dup-4")
                ),
                "share the ARN of secret \"other\"",
            ),
            (
                format!(
                    r#"{{"secrets":{{"z":{{"arn":"A1","versions":[{}]}},"A1":{{"arn":"A2","versions":[{}]}}}}}}"#,
                    version("Canary-Dup-6"),
                    version("Canary-Dup-7")
                ),
                "names and ARNs must not overlap",
            ),
            // A serde message that quotes a value is never passed through, whatever it says.
            (
                r#"{"secrets":{"app":{"arn":"arn:1","versions":"Canary-Dup-5 the secret name appears twice"}}}"#
                    .to_string(),
                "not a store file (line 1,",
            ),
        ];
        for (text, want) in cases {
            fs::write(&path, &text).unwrap();
            for e in [
                store.describe("app").await.unwrap_err(),
                store.list().await.unwrap_err(),
                store
                    .put_value("app", T1, &s("x"), &[Stage::Pending], None)
                    .await
                    .unwrap_err(),
            ] {
                let shown = format!("{e} {e:?}");
                assert!(matches!(e, StoreError::Corrupt { .. }), "{shown}");
                assert!(shown.contains(want), "{shown}");
                assert!(!shown.contains("Canary-Dup"), "a value leaked: {shown}");
            }
            assert_eq!(fs::read_to_string(&path).unwrap(), text, "left as it was");
        }
    }

    #[tokio::test]
    async fn a_write_abandoned_by_its_deadline_never_lands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let store = LocalSecretStore::new(&path);
        store.create_secret("app", &s("v1")).await.unwrap();
        let holder = File::options()
            .write(true)
            .open(dir.path().join("s.json.lock"))
            .unwrap();
        holder.lock().unwrap();
        let deadline = crate::Deadline::after(Duration::from_millis(200));
        let value = s("v2");
        let put = store.put_value("app", T1, &value, &[Stage::Pending], None);
        assert!(deadline.run(put).await.is_err(), "the deadline passed");
        // The lock is released after the caller gave up: the abandoned write must not land.
        drop(holder);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !store
                .describe("app")
                .await
                .unwrap()
                .versions
                .contains_key(T1),
            "a write abandoned at its deadline landed later"
        );
    }

    #[tokio::test]
    async fn the_in_flight_check_and_the_pending_write_are_one_operation() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("s.json"));
        store.create_secret("app", &s("v1")).await.unwrap();
        let v1 = current_version(&store).await;
        store
            .put_pending("app", T1, &s("p1"), &v1, None)
            .await
            .unwrap();
        // Another rotation's pending write is refused while T1 is in flight.
        let e = store
            .put_pending("app", T2, &s("p2"), &v1, None)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{e}");
        assert!(!e.to_string().contains("p2"));
        assert!(
            !store
                .describe("app")
                .await
                .unwrap()
                .versions
                .contains_key(T2)
        );
        // The same token again is fine (a retried createSecret).
        store
            .put_pending("app", T1, &s("p1"), &v1, None)
            .await
            .unwrap();
    }

    async fn current_version(store: &LocalSecretStore) -> String {
        let d = store.describe("app").await.unwrap();
        d.version_with(Stage::Current).unwrap().to_string()
    }

    #[tokio::test]
    async fn a_pending_value_built_from_a_replaced_current_is_refused_and_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("s.json"));
        store.create_secret("app", &s("v1")).await.unwrap();
        let v1 = current_version(&store).await;
        // A put lands between the step's read of AWSCURRENT and its pending write.
        store
            .put_value("app", T2, &s("v2"), &[], None)
            .await
            .unwrap();
        let e = store
            .put_pending("app", T1, &s("p1"), &v1, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::CurrentMoved { now, .. } if now == T2),
            "{e}"
        );
        assert!(!e.to_string().contains("p1"));
        let d = store.describe("app").await.unwrap();
        assert!(!d.versions.contains_key(T1), "nothing written");
        assert_eq!(d.version_with(Stage::Current), Some(T2));
        // Built from the new AWSCURRENT, it is written.
        store
            .put_pending("app", T1, &s("p1"), T2, None)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_held_lock_bounds_writers_and_never_delays_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let store = LocalSecretStore::new(&path).with_lock_timeout(Duration::from_millis(300));
        store.create_secret("app", &s("v1")).await.unwrap();
        let holder = File::options()
            .write(true)
            .open(dir.path().join("s.json.lock"))
            .unwrap();
        holder.lock().unwrap();

        let started = Instant::now();
        let e = store
            .put_value("app", T1, &s("v2"), &[Stage::Pending], None)
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        let message = crate::error_chain(&e);
        match &e {
            StoreError::Io { action, source, .. } => {
                assert_eq!(*action, "wait for the store's lock");
                assert_eq!(source.kind(), ErrorKind::TimedOut);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            message.contains("s.json.lock is held by another writer"),
            "{message}"
        );
        assert!(message.contains("gave up after 0."), "{message}");

        // Readers take no lock: with the default 30 s timeout, they would show any wait.
        let reader = LocalSecretStore::new(&path);
        let started = Instant::now();
        let d = reader.describe("app").await.unwrap();
        assert_eq!(read_everything(&reader, "app").await, [true; 4]);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            d.version_with(Stage::Pending).is_none(),
            "nothing was written"
        );

        holder.unlock().unwrap();
        store
            .put_value("app", T1, &s("v2"), &[Stage::Pending], None)
            .await
            .unwrap();
    }

    #[test]
    fn the_engine_shown_is_read_as_rotations_read_values() {
        for value in [
            r#"{"engine":"postgres","host":"h","big":1e400}"#,
            r#"{"x":"\ud800","engine":"postgres"}"#,
            r#"{"engine":"postgres","deep":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}"#,
        ] {
            assert_eq!(engine_of(value).as_deref(), Some("postgres"), "{value}");
        }
        assert_eq!(engine_of(r#"{"engine":"post\ngres"}"#), None);
        assert_eq!(engine_of("not json"), None);
    }

    #[tokio::test]
    async fn describe_lists_only_labelled_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("s.json"));
        store.create_secret("app", &s("v1")).await.unwrap();
        store
            .put_value("app", T1, &s("v2"), &[Stage::Pending], None)
            .await
            .unwrap();
        store
            .update_stage(
                "app",
                StageMove {
                    stage: Stage::Pending,
                    move_to: None,
                    remove_from: Some(T1),
                },
            )
            .await
            .unwrap();
        let d = store.describe("app").await.unwrap();
        assert_eq!(d.versions.len(), 1);
        assert!(!d.versions.contains_key(T1));
        // Still kept: listed (newest first, without a label) and readable by id.
        let versions = store.list_versions("app").await.unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0].id, T1);
        assert!(versions[0].stages.stages.is_empty());
        let v = store
            .get_value(
                "app",
                VersionSelector {
                    version_id: Some(T1),
                    stage: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(v.value.expose_secret(), "v2");
    }

    #[tokio::test]
    async fn a_claim_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("s.json"));
        let arn = "arn:local:secretsmanager:local:000000000000:secret:app-abcdef";
        let first = store.claim(arn).await.unwrap();
        assert!(first.is_exclusive());
        // Another handle in the same process, through another clone of the store.
        let e = store.clone().claim(arn).await.unwrap_err();
        assert!(matches!(e, StoreError::Busy(_)), "{e:?}");
        assert!(e.to_string().contains(arn), "{e}");
        // Claims are per secret.
        let other = store.claim("arn:other").await.unwrap();
        drop(first);
        let again = store.claim(arn).await.unwrap();
        assert!(again.is_exclusive());
        drop((again, other));
    }

    #[tokio::test]
    async fn a_cached_read_sees_every_write_of_any_handle() {
        // Two handles on one file: as two processes, each with its own cache.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let (a, b) = (LocalSecretStore::new(&path), LocalSecretStore::new(&path));
        a.create_secret("s", &SecretString::from("{}".to_string()))
            .await
            .unwrap();
        let tag = |d: &SecretDescription, k: &str| {
            d.tags
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        for i in 0..50 {
            // Warm both caches, then write through the other handle within the same second.
            a.describe("s").await.unwrap();
            b.describe("s").await.unwrap();
            b.tag("s", "k", &i.to_string()).await.unwrap();
            assert_eq!(
                tag(&a.describe("s").await.unwrap(), "k"),
                Some(i.to_string())
            );
            a.tag("s", "j", &i.to_string()).await.unwrap();
            assert_eq!(
                tag(&b.describe("s").await.unwrap(), "j"),
                Some(i.to_string())
            );
            assert_eq!(
                tag(&a.describe("s").await.unwrap(), "j"),
                Some(i.to_string())
            );
        }
    }
}
