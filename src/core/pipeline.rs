//! A pipeline: commands sent together, answered in order, as plain data.

use crate::core::cmd::Cmd;
use crate::core::error::Result;
use crate::core::value::Value;

/// A pipeline: commands sent together, answered in order.
///
/// Commands may touch any keys: the client splits them per node and reassembles the
/// replies in the order the commands were added.
///
/// ```
/// use redis_cluster_uring::{cmd, Pipeline};
/// let mut pipe = Pipeline::new();
/// pipe.set("a", 1).get("a").add(cmd("INCR").arg("counter"));
/// assert_eq!(pipe.len(), 3);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    pub(crate) cmds: Vec<Cmd>,
    pub(crate) raise_on_error: bool,
    pub(crate) atomic: bool,
}

/// A borrowed pipeline, copied into an `Arc`: for calls that take the pipeline to another
/// thread ([`SharedClient::execute`](crate::SharedClient::execute)). Keep a pipeline run
/// again and again in an `Arc` to send it without the copy.
impl From<&Pipeline> for std::sync::Arc<Pipeline> {
    fn from(p: &Pipeline) -> std::sync::Arc<Pipeline> {
        std::sync::Arc::new(p.clone())
    }
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// An empty pipeline with room for `n` commands.
    pub fn with_capacity(n: usize) -> Pipeline {
        Pipeline {
            cmds: Vec::with_capacity(n),
            raise_on_error: false,
            atomic: false,
        }
    }

    /// Adds a command.
    pub fn add(&mut self, cmd: Cmd) -> &mut Pipeline {
        self.cmds.push(cmd);
        self
    }

    /// When set, [`Client::execute`](crate::Client::execute) returns the first failed command's error instead of
    /// the per-command results. Off by default: one command's error is that command's
    /// result, and the others still count.
    pub fn raise_on_error(&mut self, raise: bool) -> &mut Pipeline {
        self.raise_on_error = raise;
        self
    }

    /// Makes the pipeline a transaction: [`Client::execute`](crate::Client::execute) sends `MULTI`, the commands
    /// and `EXEC` as one contiguous write to the node of their slot, and returns each
    /// command's result from the `EXEC` reply. The keys must share one slot (a hash tag),
    /// or [`ErrorKind::CrossSlot`](crate::ErrorKind::CrossSlot) is returned before anything is sent. See
    /// [`crate::core::transaction`] for redirects, `EXECABORT` and retries.
    ///
    /// ```
    /// use redis_cluster_uring::Pipeline;
    /// let mut tx = Pipeline::new();
    /// tx.atomic().set("{user:1}name", "ada").set("{user:1}visits", 0);
    /// assert!(tx.is_atomic());
    /// ```
    pub fn atomic(&mut self) -> &mut Pipeline {
        self.atomic = true;
        self
    }

    /// Whether the pipeline runs as a transaction ([`Pipeline::atomic`]).
    pub fn is_atomic(&self) -> bool {
        self.atomic
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// True when there are no commands.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// Removes every command, keeping the allocation.
    pub fn clear(&mut self) {
        self.cmds.clear();
    }

    /// The commands.
    pub fn commands(&self) -> &[Cmd] {
        &self.cmds
    }

    /// With [`Pipeline::raise_on_error`], the first error instead of the results (both
    /// clients' `execute`, reports and `WATCH` sessions).
    pub(crate) fn raise_first_error(
        &self,
        results: Vec<Result<Value>>,
    ) -> Result<Vec<Result<Value>>> {
        if self.raise_on_error {
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                return Err(e.clone());
            }
        }
        Ok(results)
    }
}
