"""`evalkit watch`: every checkpoint a training run writes, evaluated once it is completely written.

Modules: `discover` (checkpoints under a training output directory, their layout and training step), `complete`
(is a checkpoint completely written: the layout's own marker, else the weights' structure and a settle time),
`state` (which checkpoints are done, failed or in progress, kept in the watch directory so a restarted watch skips
finished ones and resumes a half-evaluated one), `config` (the watch's own flags), `watcher` (the loop, on one
`EvalSession`), `heldout` (the episodes the selected checkpoint is re-evaluated on), `gate` (the verdict against a
baseline), `tracking` (one tracker run per watch), `report` (the curves and the selection), `cli`.

Polling, not file-system events: training jobs usually write to a network or cluster file system (NFS, Lustre,
GPFS, a FUSE-mounted bucket) from another host, where inotify sees nothing; a checkpoint arrives every few minutes
to hours, so listing the directory every `--poll` seconds costs nothing and needs no extra package.
"""
