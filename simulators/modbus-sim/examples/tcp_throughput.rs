//! Rough TCP throughput of the simulator with a tokio-modbus client:
//! `cargo run --release -p modbus-sim --example tcp_throughput -- [CONNECTIONS] [SECONDS]`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use modbus_sim::{MapFile, Simulator};
use tokio_modbus::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let conns: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    let secs: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3.0);
    let map = MapFile::parse(
        "endpoints:\n  - name: b\n    tcp: 127.0.0.1:0\n    units: [ { id: 1, holding: [ { start: 0, count: 200 } ] } ]\n",
        "bench",
    )?;
    let sim = Simulator::from_map(&map.endpoints[0].device);
    let addr = sim.serve_tcp("127.0.0.1:0").await?;
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = tcp::connect_slave(addr, Slave(1)).await.unwrap();
            while Instant::now() < end {
                c.read_holding_registers(0, 10).await.unwrap().unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "{conns} connection(s): {n} requests in {secs} s = {:.0} req/s (server counted {})",
        n as f64 / secs,
        sim.stats().snapshot().requests
    );
    sim.shutdown().await;
    Ok(())
}
