//! A pipeline: commands sent together, answered in order, as plain data.

use crate::core::cmd::Cmd;
use crate::core::error::Result;
use crate::core::reply::FromReply;
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
    /// Indexes of the commands whose replies [`Pipeline::ignore`] leaves out, ascending.
    ignored: Vec<usize>,
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
            ignored: Vec::new(),
        }
    }

    /// Adds a command.
    pub fn add(&mut self, cmd: Cmd) -> &mut Pipeline {
        self.cmds.push(cmd);
        self
    }

    /// Leaves the last command's reply out of the results: `execute` returns one result
    /// per command not ignored, and `query_pipeline` converts only those. The command
    /// still runs, and its failure is not hidden: with [`Pipeline::raise_on_error`], and
    /// always in `query_pipeline`, an error reply of an ignored command fails the
    /// pipeline like any other. Without a command to ignore, it does nothing.
    ///
    /// ```
    /// use redis_cluster_uring::Pipeline;
    /// let mut pipe = Pipeline::new();
    /// pipe.set("a", 1).ignore().incr("a", 1).get("a");
    /// assert_eq!((pipe.len(), pipe.replies()), (3, 2));
    /// ```
    pub fn ignore(&mut self) -> &mut Pipeline {
        if let Some(last) = self.cmds.len().checked_sub(1) {
            if self.ignored.last() != Some(&last) {
                self.ignored.push(last);
            }
        }
        self
    }

    /// How many results `execute` returns: one per command not ignored.
    pub fn replies(&self) -> usize {
        self.cmds.len() - self.ignored.len()
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
        self.ignored.clear();
    }

    /// The commands.
    pub fn commands(&self) -> &[Cmd] {
        &self.cmds
    }

    /// What `execute` returns from every command's result: with
    /// [`Pipeline::raise_on_error`], the first error (of any command, ignored or not);
    /// otherwise the results of the commands not ignored (both clients' `execute`,
    /// reports and `WATCH` sessions).
    pub(crate) fn finish(&self, results: Vec<Result<Value>>) -> Result<Vec<Result<Value>>> {
        if self.raise_on_error {
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                return Err(e.clone());
            }
        }
        if self.ignored.is_empty() {
            return Ok(results);
        }
        let mut ignored = self.ignored.iter().peekable();
        Ok(results
            .into_iter()
            .enumerate()
            .filter(|(i, _)| {
                let skip = ignored.peek() == Some(&i);
                if skip {
                    ignored.next();
                }
                !skip
            })
            .map(|(_, r)| r)
            .collect())
    }

    /// What `query_pipeline` returns from every command's result: the first error (of
    /// any command, ignored or not), or the replies of the commands not ignored, as one
    /// array converted to `T` (a `Vec`, a tuple, `()` to drop them).
    pub(crate) fn convert<T: FromReply>(&self, results: Vec<Result<Value>>) -> Result<T> {
        let mut values = Vec::with_capacity(self.replies());
        let mut ignored = self.ignored.iter().peekable();
        for (i, r) in results.into_iter().enumerate() {
            let v = r?;
            if ignored.peek() == Some(&&i) {
                ignored.next();
            } else {
                values.push(v);
            }
        }
        T::from_reply(Value::Array(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::{Error, ErrorKind};

    fn int(n: i64) -> Result<Value> {
        Ok(Value::Int(n))
    }

    fn failed() -> Result<Value> {
        Err(Error::new(ErrorKind::ServerError, "ERR no"))
    }

    /// Four commands, the second and the fourth ignored.
    fn four() -> Pipeline {
        let mut p = Pipeline::new();
        p.incr("a", 1)
            .ignore()
            .ignore()
            .incr("b", 1)
            .incr("c", 1)
            .ignore()
            .incr("d", 1);
        p
    }

    #[test]
    fn ignore_marks_the_last_command_once_and_only_when_there_is_one() {
        let mut p = Pipeline::new();
        p.ignore();
        assert_eq!(p.replies(), 0);
        let p4 = four();
        assert_eq!((p4.len(), p4.replies()), (4, 2));
        assert_eq!(p4.ignored, vec![0, 2]);
        let mut cleared = p4.clone();
        cleared.clear();
        cleared.incr("x", 1);
        assert_eq!(cleared.replies(), 1);
    }

    #[test]
    fn execute_leaves_ignored_results_out_but_raises_their_errors_when_asked() {
        let p = four();
        let kept = p.finish(vec![int(1), int(2), int(3), int(4)]).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].as_ref().unwrap(), &Value::Int(2));
        assert_eq!(kept[1].as_ref().unwrap(), &Value::Int(4));
        // An ignored failure is left out with its command...
        let kept = p.finish(vec![failed(), int(2), int(3), int(4)]).unwrap();
        assert!(kept.iter().all(|r| r.is_ok()));
        // ...unless the pipeline raises errors: then it fails the pipeline.
        let mut raising = p.clone();
        raising.raise_on_error(true);
        let e = raising
            .finish(vec![failed(), int(2), int(3), int(4)])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ServerError);
    }

    #[test]
    fn query_pipeline_converts_the_kept_replies_as_one_array_and_fails_on_any_error() {
        let p = four();
        let (b, d): (i64, i64) = p.convert(vec![int(1), int(2), int(3), int(4)]).unwrap();
        assert_eq!((b, d), (2, 4));
        let all: Vec<i64> = p.convert(vec![int(1), int(2), int(3), int(4)]).unwrap();
        assert_eq!(all, vec![2, 4]);
        p.convert::<()>(vec![int(1), int(2), int(3), int(4)])
            .unwrap();
        // A tuple of the wrong size is a type mismatch, not a panic.
        let e = p
            .convert::<(i64, i64, i64)>(vec![int(1), int(2), int(3), int(4)])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TypeMismatch);
        // An ignored command's error still fails the conversion.
        let e = p
            .convert::<Vec<i64>>(vec![int(1), int(2), failed(), int(4)])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ServerError);
    }
}
