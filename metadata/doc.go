// Package metadata is pgshard's model of a distributed database: the worker nodes, the
// distributed tables with their partition columns, their shards (hash-token intervals) and
// each shard's placements on workers with their states, as pg_shard keeps them in the
// coordinator's schema pgs_distribution_metadata.
//
// A Snapshot is an immutable, versioned copy of that metadata. Readers take the current
// snapshot from a Cache and use it for a whole statement without locks; writers (metadata
// changes, placement state changes) build a new snapshot and swap it in. Package
// metadata/store reads and writes the snapshot's source of truth on the coordinator.
//
// Every committed change of the coordinator's metadata bumps its generation; a snapshot
// carries the generation it was loaded at, and a change this proxy made itself carries
// the generation it committed at (Cache.Apply). The Cache never lets an older snapshot
// replace a newer one (Cache.Store), so a reload that read the metadata before a change
// cannot undo it: a reload that keeps reading an older generation than a change this
// proxy applied takes its snapshot with the change kept on top (Cache.Rebase), and a
// change applied late never undoes a newer change of the same placement.
package metadata
