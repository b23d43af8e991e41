//! Where the cgroup hierarchies are mounted (`/proc/self/mountinfo`).

use std::path::PathBuf;

/// Unescapes the octal escapes (`\040`) of `/proc/self/mountinfo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Cgroup mounts found in a mountinfo text: (v2 mounts, v1 mounts with the
/// cpu controller).
pub fn cgroup_mounts(mountinfo: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut v2 = Vec::new();
    let mut v1 = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mnt) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let mut post = post.split_whitespace();
        let fstype = post.next().unwrap_or("");
        let _source = post.next();
        let opts = post.next().unwrap_or("");
        match fstype {
            "cgroup2" => v2.push(PathBuf::from(unescape_mount(mnt))),
            "cgroup" if opts.split(',').any(|o| o == "cpu") => {
                v1.push(PathBuf::from(unescape_mount(mnt)))
            }
            _ => {}
        }
    }
    (v2, v1)
}
