//! A per-link TCP proxy on 127.0.0.1, the harness's way to break one
//! directed peer link without touching the others.
//!
//! `swarmd --peer-routes PEER=VIA` makes a node dial VIA whenever it talks
//! to PEER, so a proxy listening on VIA and forwarding to PEER sits on the
//! link from that node to PEER only. Clients still connect to nodes directly.
//!
//! A link is in one [`LinkMode`] at a time and can be switched at runtime:
//! - `Pass`: bytes flow.
//! - `Blackhole`: nothing is read from either side (TCP back-pressure holds
//!   the bytes, as a real partition's retransmits would) and connections stay
//!   open; new connections are accepted and are just as silent. Healing
//!   delivers what was held, unless a side gave up on the connection first.
//! - `Drop`: every connection is closed at once and new ones are closed as
//!   soon as they are accepted.
//! - `Delay(d)`: each chunk is held for `d` before it is forwarded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::NodeId;

/// How long the proxy waits to reach its target before it gives up on a
/// connection (the client then sees it closed, as with a dead peer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes read from one side before they are forwarded to the other.
const CHUNK_BYTES: usize = 64 * 1024;

/// What a link does with the bytes that reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Pass,
    Blackhole,
    Drop,
    Delay(Duration),
}

/// One proxy: listens on an ephemeral 127.0.0.1 port and forwards every
/// connection to `target`. Dropping it stops the listener and closes every
/// connection it carries.
#[derive(Debug)]
pub struct LinkProxy {
    listen: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<LinkMode>,
    /// The accept loop; it owns the connection tasks, so aborting it ends
    /// them too.
    task: JoinHandle<()>,
}

impl LinkProxy {
    /// Binds 127.0.0.1:0 and starts forwarding to `target` in `Pass` mode.
    /// Must be called inside a tokio runtime.
    pub async fn start(target: SocketAddr) -> Result<LinkProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind a proxy on 127.0.0.1:0")?;
        let listen = listener.local_addr().context("read the proxy's address")?;
        let (mode, _) = watch::channel(LinkMode::Pass);
        let task = tokio::spawn(accept_loop(listener, target, mode.subscribe()));
        Ok(LinkProxy {
            listen,
            target,
            mode,
            task,
        })
    }

    /// Where the proxy listens: the address to dial instead of `target`.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }

    pub fn set_mode(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<LinkMode>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else {
                    // Out of file descriptors or similar: back off briefly
                    // rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if *mode.borrow() == LinkMode::Drop {
                    drop(inbound);
                    continue;
                }
                connections.spawn(carry(inbound, target, mode.clone()));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Carries one connection until either side closes or the link is dropped.
async fn carry(inbound: TcpStream, target: SocketAddr, mode: watch::Receiver<LinkMode>) {
    let outbound = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => stream,
        _ => return,
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let mut dropped = mode.clone();
    tokio::select! {
        _ = pump(in_read, out_write, mode.clone()) => {}
        _ = pump(out_read, in_write, mode) => {}
        _ = wait_for_drop(&mut dropped) => {}
    }
}

/// Forwards bytes from `from` to `to` as the link's mode allows. Returns when
/// either side closes, an I/O error occurs or the link is dropped.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<LinkMode>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        // Not reading while blackholed is what holds the sender back.
        let Some(_) = wait_open(&mut mode).await else {
            return Ok(());
        };
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        // The mode may have changed while the read was pending.
        let Some(delay) = wait_open(&mut mode).await else {
            return Ok(());
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Waits while the link is blackholed; then the delay to apply to the next
/// chunk, or `None` when the link is dropped.
async fn wait_open(mode: &mut watch::Receiver<LinkMode>) -> Option<Duration> {
    loop {
        let current = *mode.borrow_and_update();
        match current {
            LinkMode::Pass => return Some(Duration::ZERO),
            LinkMode::Delay(d) => return Some(d),
            LinkMode::Drop => return None,
            LinkMode::Blackhole => {
                if mode.changed().await.is_err() {
                    // The proxy is gone; so is this connection.
                    return None;
                }
            }
        }
    }
}

async fn wait_for_drop(mode: &mut watch::Receiver<LinkMode>) {
    loop {
        if *mode.borrow_and_update() == LinkMode::Drop {
            return;
        }
        if mode.changed().await.is_err() {
            return;
        }
    }
}

/// One proxy per ordered pair of nodes `(from, to)`: the link `from` uses to
/// reach `to`.
#[derive(Debug, Default)]
pub struct LinkProxies {
    links: BTreeMap<(NodeId, NodeId), LinkProxy>,
}

impl LinkProxies {
    /// Starts a proxy for every ordered pair of distinct nodes in `addrs`.
    pub async fn start(addrs: &BTreeMap<NodeId, SocketAddr>) -> Result<LinkProxies> {
        let mut links = BTreeMap::new();
        for &from in addrs.keys() {
            for (&to, &target) in addrs {
                if from != to {
                    let proxy = LinkProxy::start(target)
                        .await
                        .with_context(|| format!("start the proxy for link {from}->{to}"))?;
                    links.insert((from, to), proxy);
                }
            }
        }
        Ok(LinkProxies { links })
    }

    /// The `swarmd` flags that route every peer connection of `from`
    /// through its proxies: `--peer-routes TO_ADDR=PROXY_ADDR,...`.
    pub fn peer_route_args(&self, from: NodeId) -> Vec<String> {
        let routes: Vec<String> = self
            .links
            .iter()
            .filter(|((f, _), _)| *f == from)
            .map(|(_, p)| format!("{}={}", p.target(), p.listen_addr()))
            .collect();
        if routes.is_empty() {
            return Vec::new();
        }
        vec!["--peer-routes".into(), routes.join(",")]
    }

    /// Every ordered pair that has a proxy.
    pub fn links(&self) -> Vec<(NodeId, NodeId)> {
        self.links.keys().copied().collect()
    }

    pub fn link(&self, from: NodeId, to: NodeId) -> Option<&LinkProxy> {
        self.links.get(&(from, to))
    }

    /// Sets one directed link; an unknown pair is ignored.
    pub fn set(&self, from: NodeId, to: NodeId, mode: LinkMode) {
        if let Some(p) = self.links.get(&(from, to)) {
            p.set_mode(mode);
        }
    }

    /// Sets both directions of every link touching `node`: the way to cut a
    /// node off from the rest (clients still reach it directly).
    pub fn isolate(&self, node: NodeId, mode: LinkMode) {
        for ((from, to), p) in &self.links {
            if *from == node || *to == node {
                p.set_mode(mode);
            }
        }
    }

    /// Every link back to `Pass`.
    pub fn heal(&self) {
        for p in self.links.values() {
            p.set_mode(LinkMode::Pass);
        }
    }

    /// Links not in `Pass` mode.
    pub fn faulty(&self) -> Vec<((NodeId, NodeId), LinkMode)> {
        self.links
            .iter()
            .filter(|(_, p)| p.mode() != LinkMode::Pass)
            .map(|(k, p)| (*k, p.mode()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// An echo server on 127.0.0.1; returns its address.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(within, s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn pass_blackhole_heal_and_drop() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut s, Duration::from_secs(2)).await.unwrap(),
            b"ping"
        );

        proxy.set_mode(LinkMode::Blackhole);
        assert!(
            round_trip(&mut s, Duration::from_millis(300))
                .await
                .is_none()
        );
        // New connections are accepted but silent too.
        let mut fresh = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert!(
            round_trip(&mut fresh, Duration::from_millis(300))
                .await
                .is_none()
        );

        // Healing delivers what was held back.
        proxy.set_mode(LinkMode::Pass);
        for conn in [&mut s, &mut fresh] {
            let mut buf = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(2), conn.read_exact(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf, b"ping");
        }

        proxy.set_mode(LinkMode::Drop);
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "a dropped link closes its connections");
        let mut refused = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), refused.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "a dropped link closes new connections");

        proxy.set_mode(LinkMode::Pass);
        let mut again = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert!(
            round_trip(&mut again, Duration::from_secs(2))
                .await
                .is_some()
        );
    }

    #[tokio::test]
    async fn delay_holds_each_chunk() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        proxy.set_mode(LinkMode::Delay(Duration::from_millis(150)));
        let mut s = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let started = std::time::Instant::now();
        assert!(round_trip(&mut s, Duration::from_secs(3)).await.is_some());
        // Once on the way there, once on the way back.
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn peer_routes_name_every_other_node() {
        let a = echo_server().await;
        let b = echo_server().await;
        let c = echo_server().await;
        let addrs = BTreeMap::from([(1, a), (2, b), (3, c)]);
        let proxies = LinkProxies::start(&addrs).await.unwrap();
        assert_eq!(proxies.links().len(), 6);
        let args = proxies.peer_route_args(1);
        assert_eq!(args[0], "--peer-routes");
        assert!(args[1].contains(&format!("{b}=")) && args[1].contains(&format!("{c}=")));
        assert!(!args[1].contains(&format!("{a}=")));
        proxies.isolate(1, LinkMode::Blackhole);
        assert_eq!(proxies.faulty().len(), 4);
        proxies.heal();
        assert!(proxies.faulty().is_empty());
    }
}
