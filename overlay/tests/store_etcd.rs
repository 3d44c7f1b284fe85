//! experiment
mod common;
use shibafu_overlay::store::Store;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_experiment() {
    let mut etcd = common::Etcd::start();
    let s = etcd.store().await;
    s.put("/x", b"1".to_vec(), None).await.expect("put");
    etcd.kill();
    let t = Instant::now();
    let r = s.put("/x", b"2".to_vec(), None).await;
    eprintln!("while down: {:?} after {:?}", r, t.elapsed());
    etcd.resume();
    let t = Instant::now();
    for i in 0..20 {
        let r = s.put("/x", b"3".to_vec(), None).await;
        eprintln!("after resume try {i}: {:?} at {:?}", r, t.elapsed());
        if r.is_ok() { break; }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
