//! `headroom-docgen OUT`: writes the man pages (section 8) and the bash, zsh
//! and fish completions of headroomd and headroomctl from their clap
//! definitions, for `scripts/package.sh`. Not installed.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use clap_complete::Shell;
use headroom::cli::{CtlArgs, HeadroomdArgs, HEADROOMD_ENV, HEADROOMD_FILES};

/// Writes OUT/man/*.8 and OUT/completions/{bash,zsh,fish}/*.
#[derive(Parser, Debug)]
#[command(name = "headroom-docgen", version = headroom_buildinfo::LONG_VERSION)]
struct Args {
    /// Output directory.
    out: PathBuf,
}

const SECTION: &str = "8";

fn main() -> ExitCode {
    headroom::cli::exit_quietly_on_closed_pipe();
    let args = Args::parse();
    match generate(&args.out) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("headroom-docgen: {}", headroom::error_report::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Every page and completion file; returns their paths.
fn generate(out: &Path) -> Result<Vec<PathBuf>> {
    let man_dir = out.join("man");
    fs::create_dir_all(&man_dir).with_context(|| format!("creating {}", man_dir.display()))?;
    let mut files = Vec::new();
    let write = |path: PathBuf, bytes: &[u8], files: &mut Vec<PathBuf>| -> Result<()> {
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
        Ok(())
    };
    write(
        man_dir.join("headroomd.8"),
        &man_page(HeadroomdArgs::command(), &daemon_sections())?,
        &mut files,
    )?;
    let mut ctl = CtlArgs::command().disable_help_subcommand(true);
    ctl.build();
    let ctl_extra = vec![(
        "SEE ALSO",
        vec![(
            String::new(),
            "headroomd(8), headroomctl-status(8), headroomctl-reload(8)".into(),
        )],
    )];
    write(
        man_dir.join("headroomctl.8"),
        &man_page(ctl.clone(), &ctl_extra)?,
        &mut files,
    )?;
    for sub in ctl.get_subcommands() {
        let name = sub.get_display_name().unwrap_or(sub.get_name()).to_string();
        let see = vec![(
            "SEE ALSO",
            vec![(String::new(), "headroomctl(8), headroomd(8)".into())],
        )];
        write(
            man_dir.join(format!("{name}.{SECTION}")),
            &man_page(sub.clone(), &see)?,
            &mut files,
        )?;
    }
    for (shell, dir, name) in [
        (Shell::Bash, "bash", "{}"),
        (Shell::Zsh, "zsh", "_{}"),
        (Shell::Fish, "fish", "{}.fish"),
    ] {
        let d = out.join("completions").join(dir);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        for mut cmd in [HeadroomdArgs::command(), CtlArgs::command()] {
            let bin = cmd.get_name().to_string();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, &bin, &mut buf);
            write(d.join(name.replace("{}", &bin)), &buf, &mut files)?;
        }
    }
    Ok(files)
}

/// Extra sections: (heading, [(tag, text)]); an empty tag is a paragraph.
type Sections = Vec<(&'static str, Vec<(String, String)>)>;

fn daemon_sections() -> Sections {
    vec![
        (
            "ENVIRONMENT",
            HEADROOMD_ENV
                .iter()
                .map(|(n, m)| (n.to_string(), m.to_string()))
                .collect(),
        ),
        (
            "FILES",
            HEADROOMD_FILES
                .iter()
                .map(|(n, m)| (n.to_string(), m.to_string()))
                .collect(),
        ),
        (
            "SIGNALS",
            vec![
                (
                    "SIGHUP".into(),
                    "Reload the configuration file, like headroomctl reload.".into(),
                ),
                (
                    "SIGTERM, SIGINT".into(),
                    "Stop: steering is turned off first (frames take the kernel path), workers \
                     drain, processes leave the job cgroups."
                        .into(),
                ),
            ],
        ),
        (
            "SEE ALSO",
            vec![(
                String::new(),
                "headroomctl(8), systemctl(1); the operator guide \
                 /usr/share/doc/headroom/operations.md and the reference configuration \
                 /etc/headroom/headroom.toml, which documents every key."
                    .into(),
            )],
        ),
    ]
}

/// roff text: backslashes and hyphens escaped, no line starting with a
/// control character.
fn roff_text(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// One page: clap_mangen's sections (title, name, synopsis, description,
/// options, subcommands), the `extra` ones, then the version.
fn man_page(cmd: clap::Command, extra: &Sections) -> Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone())
        .section(SECTION)
        .source(format!("headroom {}", headroom_buildinfo::VERSION))
        .manual("Headroom");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }
    for (heading, items) in extra {
        writeln!(out, ".SH {heading}")?;
        for (tag, text) in items {
            if tag.is_empty() {
                writeln!(out, ".PP\n{}", roff_text(text))?;
            } else {
                writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff_text(tag), roff_text(text))?;
            }
        }
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_completions_cover_the_real_command_lines() {
        let out = std::env::temp_dir().join(format!("hr-docgen-{}", std::process::id()));
        let files = generate(&out).unwrap();
        let read = |p: &str| fs::read_to_string(out.join(p)).unwrap();
        let daemon = read("man/headroomd.8");
        // Every option of the real parser is on the page (roff escapes '-').
        for a in HeadroomdArgs::command().get_arguments() {
            if let Some(l) = a.get_long() {
                assert!(
                    daemon.contains(&format!("\\-\\-{}", l.replace('-', "\\-"))),
                    "--{l}"
                );
            }
        }
        assert!(daemon.contains(".SH ENVIRONMENT") && daemon.contains("HEADROOM_LOG"));
        assert!(daemon.contains(headroom_buildinfo::COMMIT));
        let ctl = read("man/headroomctl.8");
        assert!(ctl.contains("status") && ctl.contains("reload"));
        assert!(read("man/headroomctl-status.8").contains("\\-\\-json"));
        assert!(read("completions/bash/headroomctl").contains("reload"));
        assert!(read("completions/zsh/_headroomd").contains("log-format"));
        assert!(read("completions/fish/headroomctl.fish").contains("status"));
        assert!(read("man/headroomctl-policy.8").contains("apply"));
        assert!(read("man/headroomctl-what-if.8").contains("without\\-node"));
        assert!(read("man/headroomctl-events.8").contains("\\-\\-since"));
        assert!(read("man/headroomctl-triggers.8").contains("firing"));
        // Pages: headroomd, headroomctl and its twelve commands; completions:
        // two binaries in three shells.
        assert_eq!(files.len(), 14 + 6);
        let _ = fs::remove_dir_all(&out);
    }

    #[test]
    fn roff_control_characters_are_escaped() {
        assert_eq!(roff_text(".hidden"), "\\&.hidden");
        assert_eq!(roff_text("a-b\\c"), "a\\-b\\ec");
    }
}
