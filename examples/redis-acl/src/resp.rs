//! A minimal RESP2 client: enough for `AUTH`, `ACL` and `PING` over TCP or TLS. A real
//! deployment may prefer the `redis` crate; this keeps the example's dependencies to what the
//! workspace already builds, and every call bounded by the caller.

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};

/// A byte stream: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`: the server refused the command.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$n` bytes, or nil.
    Bulk(Option<Vec<u8>>),
    /// `*n` replies, or nil.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, for simple and bulk strings.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A connection.
pub struct Conn {
    io: BufStream<Box<dyn Io>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

/// Replies nested deeper than this are refused (a hostile server cannot exhaust the stack).
const MAX_DEPTH: usize = 8;
/// A whole reply may hold at most this many bytes and elements (the commands here get short
/// replies; a hostile server cannot make the client allocate without bound).
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;
const MAX_REPLY_ELEMENTS: usize = 100_000;

impl Conn {
    /// Wraps a connected stream.
    pub fn new(io: Box<dyn Io>) -> Conn {
        Conn {
            io: BufStream::new(io),
        }
    }

    /// Sends one command (an array of bulk strings) and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        let sent = self.io.write_all(&out).await;
        // The command may hold a password (AUTH): do not leave it in freed memory.
        out.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&out);
        sent?;
        self.io.flush().await?;
        let mut budget = Budget {
            bytes: MAX_REPLY_BYTES,
            elements: MAX_REPLY_ELEMENTS,
        };
        read_reply(&mut self.io, 0, &mut budget).await
    }

    /// Shuts the stream down (TLS: close_notify).
    pub async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}

fn protocol(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a RESP reply: {what}"),
    )
}

/// What is left of a reply's allowance.
struct Budget {
    bytes: usize,
    elements: usize,
}

impl Budget {
    fn spend(&mut self, bytes: usize) -> io::Result<()> {
        self.elements = self
            .elements
            .checked_sub(1)
            .ok_or_else(|| protocol("too many elements"))?;
        self.bytes = self
            .bytes
            .checked_sub(bytes)
            .ok_or_else(|| protocol("too large"))?;
        Ok(())
    }
}

fn read_reply<'a>(
    r: &'a mut BufStream<Box<dyn Io>>,
    depth: usize,
    budget: &'a mut Budget,
) -> Pin<Box<dyn Future<Output = io::Result<Reply>> + Send + 'a>> {
    Box::pin(async move {
        if depth > MAX_DEPTH {
            return Err(protocol("nested too deep"));
        }
        let mut line = Vec::new();
        let n = r.take(64 * 1024).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        budget.spend(line.len())?;
        let line = line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| protocol("a line without CRLF"))?;
        let (kind, rest) = line
            .split_first()
            .ok_or_else(|| protocol("an empty line"))?;
        let rest = String::from_utf8_lossy(rest).into_owned();
        let len = |s: &str| -> io::Result<Option<usize>> {
            let n: i64 = s.parse().map_err(|_| protocol("a bad length"))?;
            match n {
                -1 => Ok(None),
                n if n >= 0 && (n as usize) <= MAX_REPLY_BYTES => Ok(Some(n as usize)),
                _ => Err(protocol("a length out of range")),
            }
        };
        Ok(match kind {
            b'+' => Reply::Simple(rest),
            b'-' => Reply::Error(rest),
            b':' => Reply::Integer(rest.parse().map_err(|_| protocol("a bad integer"))?),
            b'$' => match len(&rest)? {
                None => Reply::Bulk(None),
                Some(n) => {
                    budget.spend(n)?;
                    let mut data = vec![0; n + 2];
                    r.read_exact(&mut data).await?;
                    data.truncate(n);
                    Reply::Bulk(Some(data))
                }
            },
            b'*' => match len(&rest)? {
                None => Reply::Array(None),
                Some(n) => {
                    let mut items = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        items.push(read_reply(r, depth + 1, budget).await?);
                    }
                    Reply::Array(Some(items))
                }
            },
            _ => return Err(protocol("an unknown type byte")),
        })
    })
}
