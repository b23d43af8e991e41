//! The per-frame pipeline each worker runs (classification, direction,
//! pacing). This first version forwards every frame and counts it.

use crate::worker::{Action, DataMut, Pipeline, Side};

/// Commands from the control thread.
#[derive(Debug)]
pub enum Command {}

/// Pipeline report (cumulative).
#[derive(Debug, Clone, Default)]
pub struct Report {}

/// The Headroom pipeline.
#[derive(Debug, Default)]
pub struct HeadroomPipeline {}

impl Pipeline for HeadroomPipeline {
    type Command = Command;
    type Report = Report;

    fn on_frame(&mut self, _now_ns: u64, _side: Side, _data: &mut DataMut<'_>) -> Action {
        Action::Forward
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {}
    }

    fn tick(&mut self, _now_ns: u64) -> Report {
        Report {}
    }
}
