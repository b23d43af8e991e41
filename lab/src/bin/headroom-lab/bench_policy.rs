//! `headroom-lab bench-policy`: time from `policy apply` to active on every
//! server of a 3-server lab (the apply's answer comes once every live
//! server runs the version), over N applies from rotating servers; writes a
//! Markdown table under perf/results/<date>/policy-apply.md.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use headroom::ctl::{call, Request, Response};
use headroom_lab::{gold_bronze_policy as policy, Lab, ServerConfig};

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(headroomd: &Path, applies: usize, out: &Path) -> Result<()> {
    let mut lab = Lab::up(3, 1)?;
    let dir = std::env::temp_dir().join(format!("{}-bench-policy", lab.tag));
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("pool.key");
    headroom_config::write_key_file(&key, b"bench-policy-pool-key-0123456789")?;
    let servers = lab.servers.clone();
    let mut sockets = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let sock = dir.join(format!("s{}.sock", s.id));
        let cfg = ServerConfig::new(s, &sock)
            .pool(s, &servers, &key)
            .merge(&policy(60))?
            .render();
        sockets.push(lab.start_headroomd(headroomd, i, &dir, &cfg)?);
    }
    // Wait for v1 (the node files' initial policy) everywhere.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all = sockets.iter().all(|s| match call(s, &Request::Status) {
            Ok(Response::Status(st)) => st.policy.is_some_and(|p| {
                p.nodes.len() == 3 && p.nodes.iter().all(|n| n.active.as_deref() == Some("v1"))
            }),
            _ => false,
        });
        if all {
            break;
        }
        if Instant::now() > deadline {
            bail!("the pool did not converge on v1");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut took = Vec::new();
    let mut master_ms = Vec::new();
    for k in 0..applies {
        let sock = &sockets[k % sockets.len()];
        let gold: u8 = if k % 2 == 0 { 80 } else { 60 };
        let t = Instant::now();
        let r = call(
            sock,
            &Request::PolicyApply {
                file: "bench.toml".into(),
                document: policy(gold),
                user: "bench".into(),
                message: format!("apply {k}"),
            },
        )?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        match r {
            Response::PolicyApplied(a) if a.complete() => {
                println!(
                    "apply {k:>2} on server {}: {} active on {} servers in {ms:.1} ms (master's rollout {} ms)",
                    k % sockets.len() + 1,
                    a.version.as_deref().unwrap_or("?"),
                    a.active_nodes,
                    a.took_ms
                );
                took.push(ms);
                master_ms.push(f64::from(a.took_ms));
            }
            Response::PolicyApplied(a) => bail!("apply {k} incomplete: {}", a.render_text()),
            Response::Error { message } => bail!("apply {k}: {message}"),
            other => bail!("apply {k}: unexpected answer {other:?}"),
        }
        // Let the beacons settle between applies.
        std::thread::sleep(Duration::from_millis(200));
    }
    took.sort_by(f64::total_cmp);
    master_ms.sort_by(f64::total_cmp);
    let md = format!(
        "# Policy apply to active on every server (3-server lab)\n\n\
         `perf/policy_bench.sh {applies}` (`headroom-lab bench-policy`): {applies} applies of a \
         ~400-byte policy, rotating over the servers; each is timed at the client from the \
         request to the answer, which comes once every live server runs the version.\n\n\
         | | median | max |\n|---|---|---|\n\
         | apply to active everywhere (client) | {:.1} ms | {:.1} ms |\n\
         | master's rollout (stage + activate) | {:.0} ms | {:.0} ms |\n",
        quantile(&took, 0.5),
        took.last().copied().unwrap_or(0.0),
        quantile(&master_ms, 0.5),
        master_ms.last().copied().unwrap_or(0.0),
    );
    print!("\n{md}");
    crate::write_report(out, "policy-apply.md", &md)?;
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
