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
    };
    LocalDemand { node, jobs }
}

#[test]
fn capacity_in_bytes_per_interval() {
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
            unbooked: 1_126_515
        }
    );
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
    }];
    let mine = local(vec![split(1, 300_000, 100_000)]);
    let g = allocate(&p, &peers, &mine);
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
    assert_eq!(allocate(&p, &[], &mine).immediate, 0);
    p.immediate_share_pct = 100;
    // Alone on the pipe: 2.5M - 500k = 2M, all of it immediate.
    assert_eq!(allocate(&p, &[], &mine).immediate, 2_000_000);
    // Unvalidated share above 100 is clamped, never over-allocating.
    p.immediate_share_pct = 250;
    assert_eq!(allocate(&p, &[], &mine).immediate, 2_000_000);
}

#[test]
fn congested_pipe_scales_unbooked() {
    let p = gig();
    let peers = [NodePipeDemand {
        booked: 1_000_000,
        unbooked: 2_000_000,
    }];
    let mine = local(vec![split(1, 500_000, 1_000_000)]);
    let g = allocate(&p, &peers, &mine);
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
    }];
    let mine = local(vec![split(1, 1_000_000, 7)]);
    let g = allocate(&p, &peers, &mine);
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
    let g = allocate(&p, &[], &mine);
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
    let g = allocate(&gig(), &[], &LocalDemand::default());
    // Nothing wanted by a single node: half the pipe as immediate credit.
    assert_eq!(
        (g.outcome, g.node_credit, g.immediate),
        (Outcome::AllFits, 0, 1_250_000)
    );
    assert_eq!(mul_div(5, 5, 0), 0);
    assert_eq!(mul_div(u64::MAX, u64::MAX, 1), u64::MAX);
}

/// Per node: bookings and measured job demands.
type PoolNodes = Vec<(Vec<JobBooking>, Vec<JobDemand>)>;

/// A pool: capacity, immediate share and nodes.
fn arb_pool() -> impl Strategy<Value = (u64, u8, PoolNodes)> {
    let cap = 1_000_000u64..20_000_000_000;
    let share = 0u8..=100;
    let job = (
        0u16..6,
        0u8..=60,
        proptest::option::of(0u8..=100),
        0u64..5_000_000,
        0u64..5_000_000,
        0u64..3000,
    );
    let node = proptest::collection::vec(job, 0..5);
    (cap, share, proptest::collection::vec(node, 1..6)).prop_map(|(cap, share, nodes)| {
        let nodes = nodes
            .into_iter()
            .map(|jobs| {
                let mut bookings: Vec<JobBooking> = Vec::new();
                let mut demands = Vec::new();
                for (job, pct, cap_pct, queued, arrived, debt) in jobs {
                    if pct > 0 && bookings.iter().all(|b| b.job != job) {
                        let cap = cap_pct.map(|c| Rate::Percent(c.max(pct)));
                        bookings.push(JobBooking {
                            job,
                            booked: Rate::Percent(pct),
                            cap,
                        });
                    }
                    demands.push(JobDemand {
                        job,
                        queued,
                        arrived,
                        debt,
                    });
                }
                (bookings, demands)
            })
            .collect();
        (cap, share, nodes)
    })
}

proptest! {
    #[test]
    fn grants_are_safe_and_work_conserving((cap, share, nodes) in arb_pool()) {
        let p = PipeSpec::new(cap, share, DEFAULT_INTERVAL_NS).unwrap();
        let capacity = p.capacity_bytes();
        let demands: Vec<LocalDemand> = nodes.iter().map(|(b, d)| node_demand(&p, b, d)).collect();
        let gossip: Vec<NodePipeDemand> = demands.iter().map(|d| d.node).collect();
        let grants: Vec<PipeGrant> = (0..demands.len())
            .map(|i| {
                let peers: Vec<NodePipeDemand> =
                    gossip.iter().enumerate().filter(|(k, _)| *k != i).map(|(_, d)| *d).collect();
                allocate(&p, &peers, &demands[i])
            })
            .collect();
        let booked: u64 = gossip.iter().map(|d| d.booked).sum();
        let unbooked: u64 = gossip.iter().map(|d| d.unbooked).sum();
        let credit: u64 = grants.iter().map(|g| g.node_credit).sum();
        let immediate: u64 = grants.iter().map(|g| g.immediate).sum();
        let njobs: u64 = demands.iter().map(|d| d.jobs.len() as u64).sum();

        // Never more than the pipe, immediate credit included (no slack needed).
        prop_assert!(credit + immediate <= capacity, "{credit} + {immediate} > {capacity}");
        for (d, g) in demands.iter().zip(&grants) {
            prop_assert_eq!(d.jobs.len(), g.jobs.len());
            prop_assert_eq!(g.node_credit, g.jobs.iter().map(|j| j.credit()).sum::<u64>());
            for (s, j) in d.jobs.iter().zip(&g.jobs) {
                prop_assert_eq!(s.job, j.job);
                // Never more than asked for, never above the cap.
                prop_assert!(j.booked <= s.booked && j.unbooked <= s.unbooked);
                if let Some(c) = s.cap {
                    prop_assert!(j.credit() <= c);
                    prop_assert_eq!(j.credit() + j.immediate_allowance.unwrap(), c);
                }
                // Bookings that fit are honoured in full.
                if booked <= capacity {
                    prop_assert_eq!(j.booked, s.booked);
                }
            }
        }
        if booked + unbooked <= capacity {
            // Everyone gets everything, and the spare is given away up to the share (each
            // node's immediate credit is rounded down: at most one byte per node, twice).
            prop_assert_eq!(credit, booked + unbooked);
            let spare = (capacity - booked - unbooked) * u64::from(share) / 100;
            prop_assert!(immediate + 2 * demands.len() as u64 >= spare);
        } else {
            // Congested: the whole pipe is granted, less one byte of rounding per job.
            prop_assert!(credit + njobs >= capacity, "{credit} + {njobs} < {capacity}");
        }
    }
}
