//! Worker threads: one single-threaded runtime per thread, each with its own listening socket
//! (SO_REUSEPORT: the kernel spreads new clients over them) and its own backend connections.
//! A client, its session and the shared connections it uses all live on one thread, so the
//! data path never pays for cross-thread wake-ups; the threads share only the topology
//! snapshot, the users, the client registry and the limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::session::Context;
use crate::shutdown::{Drain, Tasks};
use crate::tls::Acceptor;

/// Pending connections per listening socket.
const BACKLOG: i32 = 1024;

/// Binds `n` listening sockets to `addr` (port 0: one chosen port for all); returns them and
/// the bound address.
pub fn bind(
    addr: SocketAddr,
    n: usize,
) -> std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let first = listen(addr)?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n.max(1) {
        all.push(listen(bound)?);
    }
    Ok((all, bound))
}

fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Running worker threads.
#[derive(Debug)]
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

/// What one worker runs.
#[derive(Debug)]
pub struct Job {
    /// Its listening sockets (plaintext and/or TLS, each with its acceptor when TLS).
    pub listeners: Vec<(std::net::TcpListener, Option<Arc<Acceptor>>)>,
    /// Its context (its own pool).
    pub ctx: Arc<Context>,
}

impl Workers {
    /// Starts one thread per job. Each accepts until `drain` fires, then keeps serving its
    /// clients until `stop` is cancelled.
    pub fn spawn(
        jobs: Vec<Job>,
        permits: Arc<Semaphore>,
        drain: &Drain,
        tasks: &Tasks,
        stop: &CancellationToken,
    ) -> std::io::Result<Self> {
        let mut threads = Vec::new();
        for (i, job) in jobs.into_iter().enumerate() {
            let (permits, drain, tasks, stop) = (
                Arc::clone(&permits),
                drain.clone(),
                tasks.clone(),
                stop.clone(),
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let thread = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        for (listener, tls) in job.listeners {
                            match TcpListener::from_std(listener) {
                                Ok(listener) => {
                                    tokio::spawn(crate::listener::serve(
                                        listener,
                                        tls,
                                        Arc::clone(&job.ctx),
                                        Arc::clone(&permits),
                                        drain.clone(),
                                        tasks.clone(),
                                    ));
                                }
                                Err(e) => tracing::error!(error = %e, "worker cannot listen"),
                            }
                        }
                        stop.cancelled().await;
                    });
                })?;
            threads.push(thread);
        }
        Ok(Self { threads })
    }

    /// Waits for every thread to end (after `stop`).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}
