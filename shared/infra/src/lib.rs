//! Runtime plumbing shared by the workers and the CLI. Stage logic never depends on it.
