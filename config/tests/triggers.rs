//! Triggers, schedules, variants and failure policies: parsing, every
//! validation error with its line and field, the node allowlist, the
//! composed effective policy, and the parsers' fuzz body.

use std::path::Path;

use headroom_config::{
    process::CpuShare,
    triggers::{
        check_against_node, check_commands_present, Action, ActionsConfig, AdjustTarget,
        Adjustment, Cmp, Condition, Overlay, Resource,
    },
    Config, ConfigError, Rate,
};

const BASE: &str = r#"
[node]
id = 1
address = "10.0.0.1"

[interfaces]
outer = "eth0"
inner = "eth1"

[actions]
allowed_commands = ["/bin/true"]
allowed_webhooks = ["127.0.0.1:9000", "hooks.example.com"]
secrets = { hooks = "s3cret" }

[pool]
timezone = "Europe/Paris"

[[pipe]]
name = "wan"
capacity = "100Mbit"

[[job]]
name = "web"
booking = [{ pipe = "wan", rate = "60%" }]
cpu = { pool_percent = 50 }

[[job]]
name = "batch"
booking = [{ pipe = "wan", rate = "20%" }]
cpu = { pool_percent = 30 }
on_node_failure = { cpu = { pool_percent = 10 }, booking = [{ pipe = "wan", rate = "5%" }] }

[[variant]]
name = "night"
job = [{ name = "batch", cpu = { pool_percent = 60 }, booking = [{ pipe = "wan", rate = "35%" }] },
       { name = "web", booking = [{ pipe = "wan", rate = "40%" }] }]
pipe = [{ name = "wan", capacity = "200Mbit" }]

[[schedule]]
name = "night"
variant = "night"
hour = 22
day_of_week = "mon-fri"

[[schedule]]
name = "day"
hour = "6"
minute = "30"
"#;

const TRIGGER: &str = r#"
[[trigger]]
name = "batch-squeezed"
condition = "squeezed(batch, pipe=wan)"
for = "30s"
cooldown = "10m"
action = [
  { log = {} },
  { command = { argv = ["/bin/true", "x"], timeout = "2s" } },
  { webhook = { url = "http://127.0.0.1:9000/hook", token = "hooks", retries = 2 } },
  { variant = "night" },
  { adjust = { job = "batch", booking = { pipe = "wan", step = "+5%", limit = "30%" } } },
]
"#;

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(src, Path::new("pool.toml"))
}

/// `file:line: field: message` of BASE + `extra`.
fn invalid(extra: &str) -> (usize, String, String) {
    let src = format!("{BASE}{extra}");
    match parse(&src) {
        Err(e @ ConfigError::Invalid { .. }) => {
            let text = e.to_string();
            let ConfigError::Invalid {
                line,
                field,
                message,
                ..
            } = e
            else {
                unreachable!()
            };
            assert!(
                text.starts_with(&format!("pool.toml:{line}: {field}: ")),
                "{text}"
            );
            (line, field, message)
        }
        other => panic!("expected a validation error for {extra:?}, got {other:?}"),
    }
}

fn line_of(src: &str, needle: &str) -> usize {
    src.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_full_policy_parses() {
    let cfg = parse(&format!("{BASE}{TRIGGER}")).unwrap();
    assert_eq!(cfg.pool.timezone, "Europe/Paris");
    assert_eq!(cfg.variants[0].jobs.len(), 2);
    assert_eq!(cfg.schedules.len(), 2);
    let t = &cfg.triggers[0];
    assert_eq!(t.hold.as_secs(), 30);
    assert_eq!(t.cooldown.as_secs(), 600);
    assert_eq!(
        t.actions.iter().map(Action::kind).collect::<Vec<_>>(),
        ["log", "command", "webhook", "variant", "adjust"]
    );
    let Action::Webhook(w) = &t.actions[2] else {
        panic!()
    };
    assert_eq!((w.retries, w.timeout.as_secs()), (2, 5));
    assert_eq!(
        t.parsed_condition().unwrap(),
        Condition::Squeezed {
            job: "batch".into(),
            on: Resource::Pipe("wan".into()),
            by_percent: 0.0
        }
    );
    // Secrets never show in debug output.
    assert!(!format!("{:?}", cfg.actions).contains("s3cret"));
    // Schedules: unwritten finer fields are 0, coarser `*`.
    let cal = cfg.schedules[0].calendar().unwrap();
    assert_eq!(cal.hour.iter().collect::<Vec<_>>(), [22]);
    assert_eq!(cal.minute.iter().collect::<Vec<_>>(), [0]);
    assert_eq!(cal.second.iter().collect::<Vec<_>>(), [0]);
    assert_eq!(cal.day_of_week.iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(cal.day_of_month.iter().count(), 31);
}

#[test]
fn the_shipped_reference_documents_every_automation_key() {
    let cfg = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("headroom.toml")).unwrap();
    assert!(!cfg.triggers.is_empty() && !cfg.schedules.is_empty() && !cfg.variants.is_empty());
    assert!(cfg.jobs.iter().any(|j| j.on_node_failure.is_some()));
}

#[test]
fn conditions_parse() {
    let ok = [
        ("squeezed(web)", "squeezed(web)"),
        ("squeezed( web , cpu )", "squeezed(web, cpu)"),
        (
            "squeezed(web, pipe=wan, by=10%)",
            "squeezed(web, pipe=wan, by=10%)",
        ),
        ("utilisation(wan) >= 90%", "utilisation(wan) >= 90%"),
        ("utilization(wan) < 10", "utilisation(wan) < 10%"),
        ("node_failed", "node_failed"),
        ("node_failed(3)", "node_failed(3)"),
        ("node_joined(node=2)", "node_joined(2)"),
        ("pool_cores < 4.5", "pool_cores < 4.5"),
        ("insufficient_resources", "insufficient_resources"),
        (
            "insufficient_resources(pipe=wan)",
            "insufficient_resources(pipe=wan)",
        ),
        ("vip_owner_changed(web)", "vip_owner_changed(web)"),
        ("vip_unhealthy(web, node=2)", "vip_unhealthy(web, node=2)"),
        ("instances_changed(batch)", "instances_changed(batch)"),
        ("process_exited(\"batch\")", "process_exited(batch)"),
    ];
    for (text, canonical) in ok {
        let c = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(c.to_string(), canonical);
        assert_eq!(Condition::parse(canonical).unwrap(), c);
    }
    assert_eq!(
        Condition::parse("utilisation(wan) > 90%").unwrap(),
        Condition::Utilisation {
            pipe: "wan".into(),
            cmp: Cmp::Above,
            percent: 90.0
        }
    );
    for (text, want) in [
        ("", "is empty"),
        ("squeeze(web)", "unknown condition \"squeeze\""),
        ("squeezed", "needs a job"),
        ("squeezed(web, pipe=wan, cpu)", "not both"),
        ("squeezed(web) > 3", "takes no comparison"),
        ("utilisation(wan)", "needs a comparison"),
        ("utilisation(wan) > lots", "not a percentage"),
        ("node_failed(0)", "not a node id"),
        ("squeezed(web, colour=red)", "unknown argument \"colour\""),
        ("squeezed(web", "expected"),
        ("pool_cores < 4 5", "unexpected"),
        ("squeezed(web) @", "unexpected '@'"),
    ] {
        let e = Condition::parse(text).unwrap_err();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn bad_triggers_name_line_and_field() {
    let cases: [(&str, &str, &str, &str); 15] = [
        (
            "[[schedule]]\nname = \"s\"\nhour = 1\nday_of_month = 30\nmonth = \"feb\"\n",
            "day_of_month = 30",
            "schedule[2].day_of_month",
            "never match",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"squeezd(batch)\"\naction = [{ log = {} }]\n",
            "condition = \"squeezd",
            "trigger[0].condition",
            "unknown condition \"squeezd\"",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"squeezed(batch)\"\n",
            "name = \"t\"",
            "trigger[0].name",
            "has no action",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"squeezed(nobody)\"\naction = [{ log = {} }]\n",
            "condition =",
            "trigger[0].condition",
            "no job named \"nobody\"",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"utilisation(lan) > 5%\"\naction = [{ log = {} }]\n",
            "condition =",
            "trigger[0].condition",
            "no pipe named \"lan\"",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"vip_unhealthy(www)\"\naction = [{ log = {} }]\n",
            "condition =",
            "trigger[0].condition",
            "no VIP service named \"www\"",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"node_joined\"\nfor = \"5s\"\naction = [{ log = {} }]\n",
            "for = ",
            "trigger[0].for",
            "is an event",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"node_failed\"\naction = [{ variant = \"weekend\" }]\n",
            "action =",
            "trigger[0].action[0].variant",
            "no variant named \"weekend\"",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"node_failed\"\naction = [{ command = { argv = [\"/usr/bin/rm\"] } }]\n",
            "action =",
            "trigger[0].action[0].command",
            "not in this node's [actions] allowed_commands",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"node_failed\"\naction = [{ command = { argv = [\"notify\"] } }]\n",
            "action =",
            "trigger[0].action[0].command",
            "absolute path",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"node_failed\"\naction = [{ webhook = { url = \"https://evil.example.net/x\" } }]\n",
            "action =",
            "trigger[0].action[0].webhook",
            "host evil.example.net:443 is not in this node's [actions] allowed_webhooks",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"node_failed\"\naction = [{ webhook = { url = \"http://127.0.0.1:9000/\", token = \"pager\" } }]\n",
            "action =",
            "trigger[0].action[0].webhook",
            "no secret named \"pager\"",
        ),
        (
            "[[trigger]]\nname = \"t\"\ncondition = \"node_failed\"\naction = [{ adjust = { job = \"web\", cpu = { step = 5, limit = 150 } } }]\n",
            "action =",
            "trigger[0].action[0].adjust",
            "limit must be",
        ),
        (
            "[[schedule]]\nname = \"s\"\nhour = 25\n",
            "hour = 25",
            "schedule[2].hour",
            "25 is outside 0-23",
        ),
        (
            "[[schedule]]\nname = \"s\"\nvariant = \"weekend\"\nhour = 1\n",
            "variant = \"weekend\"",
            "schedule[2].variant",
            "no variant named \"weekend\"",
        ),
    ];
    for (extra, line_text, field, want) in cases {
        let (line, f, m) = invalid(extra);
        let src = format!("{BASE}{extra}");
        assert_eq!(f, field, "{extra}");
        assert!(m.contains(want), "{extra}: {m}");
        assert_eq!(line, line_of(&src, line_text), "{extra}: {m}");
    }
}

#[test]
fn bad_variants_and_failure_policies_are_rejected() {
    let (_, f, m) = invalid("[[variant]]\nname = \"v\"\njob = [{ name = \"nobody\" }]\n");
    assert_eq!(f, "variant[1].job[0].name");
    assert!(m.contains("no job named"), "{m}");
    let (_, f, m) = invalid("[[variant]]\nname = \"v\"\npipe = [{ name = \"lan\" }]\n");
    assert_eq!(f, "variant[1].pipe[0].name");
    assert!(m.contains("no pipe named"), "{m}");
    let (_, f, m) = invalid("[[variant]]\nname = \"base\"\n");
    assert_eq!(f, "variant[1].name");
    assert!(m.contains("without a variant"), "{m}");
    // An overlay that overbooks the pipe.
    let (_, f, m) = invalid(
        "[[variant]]\nname = \"greedy\"\njob = [{ name = \"web\", booking = [{ pipe = \"wan\", rate = \"90%\" }] }]\n",
    );
    assert_eq!(f, "variant[1]");
    assert!(
        m.contains("in variant \"greedy\"") && m.contains("more than its capacity"),
        "{m}"
    );
    let src = BASE.replace("\"hooks.example.com\"]", "\"https://hooks.example.com/x\"]");
    let Err(ConfigError::Invalid { field, message, .. }) = parse(&src) else {
        panic!()
    };
    assert_eq!(field, "actions.allowed_webhooks[1]");
    assert!(message.contains("host or host:port"), "{message}");
    let src = BASE.replace("[\"/bin/true\"]", "[\"true\"]");
    let Err(ConfigError::Invalid { field, .. }) = parse(&src) else {
        panic!()
    };
    assert_eq!(field, "actions.allowed_commands[0]");
    let src = BASE.replace("Europe/Paris", "Mars/Olympus");
    let Err(ConfigError::Invalid { field, message, .. }) = parse(&src) else {
        panic!()
    };
    assert_eq!(field, "pool.timezone");
    assert!(message.contains("unknown time zone"), "{message}");
}

#[test]
fn the_allowlist_is_the_nodes_own() {
    // The pool's policy is valid where it was written ...
    let src = format!("{BASE}{TRIGGER}");
    let policy = parse(&src).unwrap();
    // ... and checked against another node's [actions] on that node.
    let strict = ActionsConfig {
        allowed_commands: vec!["/bin/true".into()],
        ..Default::default()
    };
    let e = check_against_node(&policy, &src, Path::new("pool.toml"), &strict).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "pool.toml:{}: trigger[0].action[2].webhook: host 127.0.0.1:9000",
            line_of(&src, "{ webhook")
        )),
        "{text}"
    );
    let lenient = ActionsConfig {
        allowed_commands: vec!["/bin/true".into()],
        allowed_webhooks: vec!["127.0.0.1".into()],
        secrets: [("hooks".to_string(), "x".to_string())].into(),
        ..Default::default()
    };
    check_against_node(&policy, &src, Path::new("pool.toml"), &lenient).unwrap();
    assert!(lenient.allows_webhook("127.0.0.1", 1234));
    assert!(!strict.allows_webhook("127.0.0.1", 9000));
    // Commands must exist where the policy runs.
    check_commands_present(&policy, &src, Path::new("pool.toml")).unwrap();
    let missing = src.replace("[\"/bin/true\", \"x\"]", "[\"/nonexistent/headroom-hook\"]");
    let missing = missing.replace(
        "allowed_commands = [\"/bin/true\"]",
        "allowed_commands = [\"/nonexistent/headroom-hook\"]",
    );
    let policy = parse(&missing).unwrap();
    let e = check_commands_present(&policy, &missing, Path::new("pool.toml")).unwrap_err();
    assert!(
        e.to_string()
            .contains("does not exist or is not executable"),
        "{e}"
    );
}

#[test]
fn variants_failures_and_adjustments_compose() {
    let cfg = parse(&format!("{BASE}{TRIGGER}")).unwrap();
    let job = |c: &Config, n: &str| c.jobs.iter().find(|j| j.name == n).unwrap().clone();
    let base = cfg.compose(&Overlay::default());
    assert_eq!(base, cfg);
    let night = cfg.compose(&Overlay {
        variant: Some("night"),
        ..Default::default()
    });
    assert_eq!(night.pipes[0].capacity, Rate::Bps(200_000_000));
    assert_eq!(job(&night, "batch").bookings[0].rate, Rate::Percent(35.0));
    assert_eq!(
        job(&night, "batch").cpu.unwrap().share,
        CpuShare::PoolPercent(60.0)
    );
    assert_eq!(
        job(&night, "web").cpu.unwrap().share,
        CpuShare::PoolPercent(50.0)
    );
    // Failure policies lie over the variant.
    let failed = cfg.compose(&Overlay {
        variant: Some("night"),
        node_failure: true,
        adjustments: &[],
    });
    assert_eq!(
        job(&failed, "batch").cpu.unwrap().share,
        CpuShare::PoolPercent(10.0)
    );
    assert_eq!(job(&failed, "batch").bookings[0].rate, Rate::Percent(5.0));
    assert_eq!(job(&failed, "web"), job(&night, "web"));
    // Adjustments come last and never overbook the pipe.
    let adj = [
        Adjustment {
            job: "batch".into(),
            target: AdjustTarget::Booking("wan".into()),
            value: 90e6,
        },
        Adjustment {
            job: "web".into(),
            target: AdjustTarget::Cpu,
            value: 55.0,
        },
    ];
    let a = cfg.compose(&Overlay {
        adjustments: &adj,
        ..Default::default()
    });
    assert_eq!(job(&a, "batch").bookings[0].rate, Rate::Bps(40_000_000));
    assert_eq!(
        job(&a, "web").cpu.unwrap().share,
        CpuShare::PoolPercent(55.0)
    );
}

#[test]
fn fuzz_body_over_a_corpus_and_random_input() {
    let corpus: Vec<Vec<u8>> = [
        "squeezed(web, pipe=wan, by=10%)",
        "utilisation(\"a b\") <= 0.5%",
        "vip_unhealthy(node=7)",
        "pool_cores() < 3",
        "*/15",
        "mon-fri,sun",
        "8-18/2",
        "jan-dec/3",
        BASE,
        TRIGGER,
        "[[trigger]]\nname=\"x\"\ncondition=\"node_failed\"\naction=[{log={}}]",
        "[[schedule]]\nname=\"s\"\nsecond=\"*/0\"",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for c in &corpus {
        headroom_config::fuzz::triggers(c);
    }
    // Mutations of the corpus and random bytes (deterministic seed).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet =
        b"()=,<>%\"*-/ 0123456789abcdefghijklmnopqrstuvwxyz_.squeezednode_failedutilisation";
    for i in 0..20_000 {
        let mut d = corpus[i % corpus.len()].clone();
        for _ in 0..(next() % 4 + 1) {
            let r = next();
            match r % 3 {
                0 if !d.is_empty() => {
                    let p = (r >> 8) as usize % d.len();
                    d[p] = alphabet[(r >> 32) as usize % alphabet.len()];
                }
                1 if !d.is_empty() => {
                    let p = (r >> 8) as usize % d.len();
                    d.truncate(p.max(1));
                }
                _ => d.push(alphabet[(r >> 32) as usize % alphabet.len()]),
            }
        }
        headroom_config::fuzz::triggers(&d);
        let raw: Vec<u8> = (0..next() % 48).map(|_| next() as u8).collect();
        headroom_config::fuzz::triggers(&raw);
    }
}
