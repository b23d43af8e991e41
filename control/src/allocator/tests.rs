use super::*;
use proptest::prelude::*;

/// 1 Gbit/s, 50 % immediate share, 20 ms: 1e9 * 0.02 / 8 = 2_500_000 bytes per interval.
fn gig() -> PipeSpec {
    PipeSpec::new(1_000_000_000, 50, DEFAULT_INTERVAL_NS).unwrap()
}

fn split(job: u16, booked: u64, unbooked: u64) -> JobSplit {
    JobSplit {
        job,
        booked,
        unbooked,
        cap: None,
    }
}

fn local(jobs: Vec<JobSplit>) -> LocalDemand {
    let node = NodePipeDemand {
        booked: jobs.iter().map(|j| j.booked).sum(),
        unbooked: jobs.iter().map(|j| j.unbooked).sum(),
        jobs: Vec::new(),
    };
    LocalDemand { node, jobs }
}

#[test]
fn capacity_in_bytes_per_interval() {
    // Minimum request: two frames, at most 0.5 % of the pipe (100 Mbit/s: 250_000 / 200).
    assert_eq!(gig().min_request_bytes, 3028);
    let slow = PipeSpec::new(100_000_000, 50, DEFAULT_INTERVAL_NS).unwrap();
    assert_eq!(slow.min_request_bytes, 1250);
    assert_eq!(gig().capacity_bytes(), 2_500_000);
    // 10 Gbit/s over 10 ms: 1e10 * 0.01 / 8 = 12_500_000.
    assert_eq!(
        PipeSpec::new(10_000_000_000, 50, 10_000_000)
            .unwrap()
            .capacity_bytes(),
        12_500_000
    );
    // 60 % of 1 Gbit/s over 20 ms: 1_500_000 bytes.
    assert_eq!(Rate::Percent(60).bytes(&gig()), 1_500_000);
    assert_eq!(Rate::Bps(8_000_000).bytes(&gig()), 20_000);
}

#[test]
fn pipe_validation_rejects_bad_input() {
    assert_eq!(
        PipeSpec::new(0, 50, DEFAULT_INTERVAL_NS),
        Err(AllocError::ZeroCapacity)
    );
    assert_eq!(
        PipeSpec::new(1, 101, DEFAULT_INTERVAL_NS),
        Err(AllocError::ImmediateShare(101))
    );
    assert_eq!(
        PipeSpec::new(1, 50, 5_000_000),
        Err(AllocError::Interval(5_000_000))
    );
    assert_eq!(
        PipeSpec::new(1, 50, 200_000_000),
        Err(AllocError::Interval(200_000_000))
    );
}

#[test]
fn booking_validation() {
    let p = gig();
    let b = |job, booked, cap| JobBooking { job, booked, cap };
    assert!(validate_bookings(
        &p,
        &[b(1, Rate::Percent(60), None), b(2, Rate::Percent(40), None)]
    )
    .is_ok());
    assert_eq!(
        validate_bookings(
            &p,
            &[b(1, Rate::Percent(60), None), b(2, Rate::Percent(41), None)]
        ),
        Err(AllocError::OverBooked {
            booked_bps: 1_010_000_000,
            capacity_bps: 1_000_000_000
        })
    );
    assert_eq!(
        validate_bookings(
            &p,
            &[b(1, Rate::Percent(6), None), b(1, Rate::Percent(4), None)]
        ),
        Err(AllocError::DuplicateJob(1))
    );
    assert_eq!(
        validate_bookings(&p, &[b(3, Rate::Percent(20), Some(Rate::Bps(1000)))]),
        Err(AllocError::CapBelowBooking {
            job: 3,
            cap_bps: 1000,
            booked_bps: 200_000_000
        })
    );
    assert_eq!(
        validate_bookings(&p, &[b(3, Rate::Percent(120), None)]),
        Err(AllocError::Percent(120))
    );
}

#[test]
fn node_demand_splits_booked_and_unbooked() {
    let p = gig();
    let bookings = [
        JobBooking {
            job: 1,
            booked: Rate::Percent(60),
            cap: None,
        },
        JobBooking {
            job: 2,
            booked: Rate::Percent(5),
            cap: Some(Rate::Percent(10)),
        },
        JobBooking {
            job: 3,
            booked: Rate::Percent(20),
            cap: None,
        },
    ];
    let demand = [
        // Job 1 wants 2M + 3M = 5M, clamped to the capacity 2.5M: 1.5M booked + 1M unbooked.
        JobDemand {
            job: 1,
            queued: 2_000_000,
            arrived: 3_000_000,
            debt: 0,
        },
        // Job 2 wants 1M (two workers), capped at 10 % = 250k: 125k booked + 125k unbooked.
        JobDemand {
            job: 2,
            queued: 400_000,
            arrived: 100_000,
            debt: 0,
        },
        JobDemand {
            job: 2,
            queued: 400_000,
            arrived: 100_000,
            debt: 0,
        },
        // Job 3 is idle: the minimum request 3028 is booked anyway.
        // Job 7 has no booking: 10 + 5 + 1500 debt = 1515 unbooked.
        JobDemand {
            job: 7,
            queued: 10,
            arrived: 5,
            debt: 1500,
        },
        // Job 8 is idle and unbooked: no entry.
        JobDemand {
            job: 8,
            queued: 0,
            arrived: 0,
            debt: 0,
        },
    ];
    let d = node_demand(&p, &bookings, &demand);
    assert_eq!(
        d.jobs,
        vec![
            JobSplit {
                job: 1,
                booked: 1_500_000,
                unbooked: 1_000_000,
                cap: None
            },
            JobSplit {
                job: 2,
                booked: 125_000,
                unbooked: 125_000,
                cap: Some(250_000)
            },
            JobSplit {
                job: 3,
                booked: 3028,
                unbooked: 0,
                cap: None
            },
            JobSplit {
                job: 7,
                booked: 0,
                unbooked: 1515,
                cap: None
            },
        ]
    );
    // 1.5M + 125k + 3028 = 1_628_028; 1M + 125k + 1515 = 1_126_515.
    assert_eq!(
        d.node,
        NodePipeDemand {
            booked: 1_628_028,
            unbooked: 1_126_515,
            // Booked jobs are detailed for pool-wide bookings; job 7 is only in the totals.
            jobs: vec![
                JobWant {
                    job: 1,
                    booked: 1_500_000,
                    want: 2_500_000
                },
                JobWant {
                    job: 2,
                    booked: 125_000,
                    want: 250_000
                },
                JobWant {
                    job: 3,
                    booked: 3028,
                    want: 3028
                },
            ],
        }
    );
}

fn want(job: u16, booked: u64, want: u64) -> JobWant {
    JobWant { job, booked, want }
}

fn gossip(jobs: Vec<JobWant>) -> NodePipeDemand {
    NodePipeDemand {
        booked: jobs.iter().map(|j| j.booked).sum(),
        unbooked: jobs.iter().map(|j| j.want - j.booked).sum(),
        jobs,
    }
}

fn mine_from(node: &NodePipeDemand, cap: Option<u64>) -> LocalDemand {
    let jobs = node
        .jobs
        .iter()
        .map(|w| JobSplit {
            job: w.job,
            booked: w.booked,
            unbooked: w.want - w.booked,
            cap,
        })
        .collect();
    LocalDemand {
        node: node.clone(),
        jobs,
    }
}

#[test]
fn booking_is_shared_by_the_nodes_a_job_runs_on() {
    let p = gig();
    let bookings = [
        JobBooking {
            job: 1,
            booked: Rate::Percent(60),
            cap: None,
        },
        JobBooking {
            job: 2,
            booked: Rate::Percent(40),
            cap: None,
        },
    ];
    // Job 1 saturates on nodes A and B, each claiming its 1.5M booking; job 2 on node C.
    let a = gossip(vec![want(1, 1_500_000, 2_500_000)]);
    let b = a.clone();
    let c = gossip(vec![want(2, 1_000_000, 2_500_000)]);
    // Job 1 asks for 3M booked against 1.5M: A and B get 750k each, the other 1.75M each is
    // unbooked. Booked total 750k + 750k + 1M = 2.5M: the pipe is full, unbooked gets 0.
    let ga = allocate(&p, &bookings, &[b.clone(), c.clone()], &mine_from(&a, None));
    assert_eq!(ga.outcome, Outcome::UnbookedScaled);
    assert_eq!((ga.total_booked, ga.total_unbooked), (2_500_000, 5_000_000));
    assert_eq!(
        ga.jobs,
        vec![JobGrant {
            job: 1,
            booked: 750_000,
            unbooked: 0,
            immediate_allowance: None
        }]
    );
    let gc = allocate(&p, &bookings, &[a.clone(), b.clone()], &mine_from(&c, None));
    assert_eq!(gc.node_credit, 1_000_000);
    // Node B's traffic moves to A (B idle, 3028 minimum request): A's 1.5M becomes
    // 1.5M * 1.5M / 1_503_028 = 1_496_978 booked, B keeps 3021 of its 3028.
    let b_idle = gossip(vec![want(1, 3028, 3028)]);
    let ga = allocate(
        &p,
        &bookings,
        &[b_idle.clone(), c.clone()],
        &mine_from(&a, None),
    );
    assert_eq!(ga.jobs[0].booked, 1_496_978);
    let gb = allocate(&p, &bookings, &[a, c], &mine_from(&b_idle, None));
    assert_eq!(gb.jobs[0].booked, 3021);
}

#[test]
fn cap_holds_across_the_pool() {
    let p = gig();
    // Job 3: no booking, capped at 20 % = 500k, wanting 400k on A and 200k on B.
    let bookings = [JobBooking {
        job: 3,
        booked: Rate::Bps(0),
        cap: Some(Rate::Percent(20)),
    }];
    let a = gossip(vec![want(3, 0, 400_000)]);
    let b = gossip(vec![want(3, 0, 200_000)]);
    let ga = allocate(
        &p,
        &bookings,
        std::slice::from_ref(&b),
        &mine_from(&a, Some(500_000)),
    );
    let gb = allocate(&p, &bookings, &[a], &mine_from(&b, Some(500_000)));
    // 600k wanted against 500k: 400k * 5/6 = 333_333 and 200k * 5/6 = 166_666.
    assert_eq!(
        (ga.jobs[0].unbooked, gb.jobs[0].unbooked),
        (333_333, 166_666)
    );
    // Everything fits: (2.5M - 499_999) * 50 % / 2 nodes = 500_000 immediate each, but only
    // (500k - 499_999) / 2 = 0 of it for job 3.
    assert_eq!((ga.outcome, ga.immediate), (Outcome::AllFits, 500_000));
    assert_eq!(ga.jobs[0].immediate_allowance, Some(0));
}

#[test]
fn minimum_request_never_exceeds_booking() {
    let p = gig();
    // 8 kbit/s over 20 ms = 20 bytes: below the minimum request, so 20 bytes are booked.
    let bookings = [JobBooking {
        job: 1,
        booked: Rate::Bps(8_000),
        cap: None,
    }];
    let d = node_demand(&p, &bookings, &[]);
    assert_eq!(
        d.jobs,
        vec![JobSplit {
            job: 1,
            booked: 20,
            unbooked: 0,
            cap: None
        }]
    );
}

#[test]
fn all_fits_shares_the_rest_as_immediate_credit() {
    let p = gig();
    let peers = [NodePipeDemand {
        booked: 500_000,
        unbooked: 100_000,
        ..Default::default()
    }];
    let mine = local(vec![split(1, 300_000, 100_000)]);
    let g = allocate(&p, &[], &peers, &mine);
    // Queued 800k + 200k = 1M of 2.5M; nonqueued 1.5M * 50 % / 2 nodes = 375_000.
    assert_eq!(g.outcome, Outcome::AllFits);
    assert_eq!(g.immediate, 375_000);
    assert_eq!(g.node_credit, 400_000);
    assert_eq!(
        g.jobs,
        vec![JobGrant {
            job: 1,
            booked: 300_000,
            unbooked: 100_000,
            immediate_allowance: None
        }]
    );
    assert_eq!((g.total_booked, g.total_unbooked), (800_000, 200_000));
}

#[test]
fn immediate_share_extremes() {
    let mine = local(vec![split(1, 0, 500_000)]);
    let mut p = gig();
    p.immediate_share_pct = 0;
    assert_eq!(allocate(&p, &[], &[], &mine).immediate, 0);
    p.immediate_share_pct = 100;
    // Alone on the pipe: 2.5M - 500k = 2M, all of it immediate.
    assert_eq!(allocate(&p, &[], &[], &mine).immediate, 2_000_000);
    // Unvalidated share above 100 is clamped, never over-allocating.
    p.immediate_share_pct = 250;
    assert_eq!(allocate(&p, &[], &[], &mine).immediate, 2_000_000);
}

#[test]
fn congested_pipe_scales_unbooked() {
    let p = gig();
    let peers = [NodePipeDemand {
        booked: 1_000_000,
        unbooked: 2_000_000,
        ..Default::default()
    }];
    let mine = local(vec![split(1, 500_000, 1_000_000)]);
    let g = allocate(&p, &[], &peers, &mine);
    // Booked 1.5M, unbooked 3M: the remaining 1M is 1/3 of the unbooked demand, so this node
    // gets 500k + 1M / 3 = 833_333 and the peer 1M + 666_666.
    assert_eq!(g.outcome, Outcome::UnbookedScaled);
    assert_eq!(g.jobs[0].unbooked, 333_333);
    assert_eq!(g.node_credit, 833_333);
    assert_eq!(g.immediate, 0);
}

#[test]
fn overbooked_pipe_scales_bookings() {
    let p = gig();
    let peers = [NodePipeDemand {
        booked: 2_000_000,
        unbooked: 10,
        ..Default::default()
    }];
    let mine = local(vec![split(1, 1_000_000, 7)]);
    let g = allocate(&p, &[], &peers, &mine);
    // Booked 3M > 2.5M: 1M * 2.5 / 3 = 833_333; unbooked gets nothing.
    assert_eq!(g.outcome, Outcome::OverBooked);
    assert_eq!(
        g.jobs[0],
        JobGrant {
            job: 1,
            booked: 833_333,
            unbooked: 0,
            immediate_allowance: None
        }
    );
    let mut stats = AllocatorStats::default();
    stats.record(&g);
    assert_eq!((stats.allocations, stats.overbooked), (1, 1));
}

#[test]
fn cap_bounds_immediate_allowance() {
    let p = gig();
    let mine = local(vec![JobSplit {
        job: 2,
        booked: 125_000,
        unbooked: 100_000,
        cap: Some(250_000),
    }]);
    let g = allocate(&p, &[], &[], &mine);
    // Credit 225k of a 250k cap leaves 25k of immediate credit.
    assert_eq!(g.jobs[0].immediate_allowance, Some(25_000));
}

#[test]
fn overdraft_is_paid_from_unused_immediate_credit() {
    assert_eq!(pay_overdraft(1500, 400), 1100);
    assert_eq!(pay_overdraft(1500, 4000), 0);
    assert_eq!(pay_overdraft(0, 4000), 0);
}

#[test]
fn empty_input_is_harmless() {
    let g = allocate(&gig(), &[], &[], &LocalDemand::default());
    // Nothing wanted by a single node: half the pipe as immediate credit.
    assert_eq!(
        (g.outcome, g.node_credit, g.immediate),
        (Outcome::AllFits, 0, 1_250_000)
    );
    assert_eq!(mul_div(5, 5, 0), 0);
    assert_eq!(mul_div(u64::MAX, u64::MAX, 1), u64::MAX);
}

/// A pool: capacity, immediate share, the booking table and each node's measured demands.
type Pool = (u64, u8, Vec<JobBooking>, Vec<Vec<JobDemand>>);

fn arb_pool() -> impl Strategy<Value = Pool> {
    let cap = 1_000_000u64..20_000_000_000;
    let share = 0u8..=100;
    // Per job id 0..6: booking percent (0: none), optional cap percent. Bookings may add up
    // to more than the pipe, to cover the oversubscribed case too.
    let table = proptest::collection::vec((0u8..=40, proptest::option::of(0u8..=100)), 6);
    let demand = (0u16..8, 0u64..5_000_000, 0u64..5_000_000, 0u64..3000);
    let nodes = proptest::collection::vec(proptest::collection::vec(demand, 0..5), 1..6);
    (cap, share, table, nodes).prop_map(|(cap, share, table, nodes)| {
        let bookings = table
            .into_iter()
            .enumerate()
            .filter(|(_, (pct, cap))| *pct > 0 || cap.is_some())
            .map(|(job, (pct, cap))| JobBooking {
                job: job as u16,
                booked: Rate::Percent(pct),
                cap: cap.map(|c| Rate::Percent(c.max(pct))),
            })
            .collect();
        let nodes = nodes
            .into_iter()
            .map(|d| {
                d.into_iter()
                    .map(|(job, queued, arrived, debt)| JobDemand {
                        job,
                        queued,
                        arrived,
                        debt,
                    })
                    .collect()
            })
            .collect();
        (cap, share, bookings, nodes)
    })
}

proptest! {
    #[test]
    fn grants_are_safe_and_work_conserving((cap, share, bookings, nodes) in arb_pool()) {
        let p = PipeSpec::new(cap, share, DEFAULT_INTERVAL_NS).unwrap();
        let capacity = p.capacity_bytes();
        let demands: Vec<LocalDemand> = nodes.iter().map(|d| node_demand(&p, &bookings, d)).collect();
        let gossip: Vec<NodePipeDemand> = demands.iter().map(|d| d.node.clone()).collect();
        let grants: Vec<PipeGrant> = (0..demands.len())
            .map(|i| {
                let peers: Vec<NodePipeDemand> =
                    gossip.iter().enumerate().filter(|(k, _)| *k != i).map(|(_, d)| d.clone()).collect();
                allocate(&p, &bookings, &peers, &demands[i])
            })
            .collect();
        let g0 = &grants[0];
        let (booked, unbooked) = (g0.total_booked, g0.total_unbooked);
        let credit: u64 = grants.iter().map(|g| g.node_credit).sum();
        let immediate: u64 = grants.iter().map(|g| g.immediate).sum();
        let entries: u64 = demands.iter().map(|d| d.jobs.len() as u64).sum();

        // Every node sees the same picture.
        for g in &grants {
            prop_assert_eq!((g.outcome, g.total_booked, g.total_unbooked), (g0.outcome, booked, unbooked));
        }
        // Never more than the pipe, immediate credit included (no slack needed).
        prop_assert!(credit + immediate <= capacity, "{credit} + {immediate} > {capacity}");
        for (d, g) in demands.iter().zip(&grants) {
            prop_assert_eq!(d.jobs.len(), g.jobs.len());
            prop_assert_eq!(g.node_credit, g.jobs.iter().map(|j| j.credit()).sum::<u64>());
            for (s, j) in d.jobs.iter().zip(&g.jobs) {
                prop_assert_eq!(s.job, j.job);
                // Never more than asked for.
                prop_assert!(j.credit() <= s.booked + s.unbooked);
            }
        }
        for b in &bookings {
            let of_job = |g: &PipeGrant| g.jobs.iter().filter(|j| j.job == b.job).copied().collect::<Vec<_>>();
            let granted: Vec<JobGrant> = grants.iter().flat_map(of_job).collect();
            let total: u64 = granted.iter().map(|j| j.credit()).sum();
            // Caps hold across the pool, immediate allowances included.
            if let Some(c) = b.cap {
                let c = c.bytes(&p);
                let allowance: u64 = granted.iter().map(|j| j.immediate_allowance.unwrap()).sum();
                prop_assert!(total + allowance <= c, "job {}: {total} + {allowance} > {c}", b.job);
            }
            // Bookings that fit are honoured: the job's booked demand across the pool, up to
            // its booking (less a byte of rounding per node).
            if g0.outcome != Outcome::OverBooked {
                let asked: u64 = gossip.iter().flat_map(|n| &n.jobs).filter(|w| w.job == b.job).map(|w| w.booked).sum();
                let due = asked.min(b.booked.bytes(&p));
                let got: u64 = granted.iter().map(|j| j.booked).sum();
                prop_assert!(got + granted.len() as u64 >= due, "job {}: booked {got} < {due}", b.job);
            }
        }
        if booked + unbooked <= capacity {
            // Everyone gets everything, and the spare is given away up to the share (each
            // node's immediate credit is rounded down: at most one byte per node, twice).
            prop_assert_eq!(credit, booked + unbooked);
            let spare = (capacity - booked - unbooked) * u64::from(share) / 100;
            prop_assert!(immediate + 2 * demands.len() as u64 >= spare);
        } else {
            // Congested: the whole pipe is granted, less one byte of rounding per job entry.
            prop_assert!(credit + entries >= capacity, "{credit} + {entries} < {capacity}");
        }
    }
}
