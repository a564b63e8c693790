package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/metadata"
)

//go:embed nodeident.sql
var nodeIdentSQL string

// NodeIdentity is what a worker says about itself: the system identifier of its data
// directory (pg_control_system()), its timeline and its WAL position.
type NodeIdentity struct {
	SystemID int64
	Timeline int64
	LSN      uint64
}

// NodeRecord is a worker's row of node_identity.
type NodeRecord struct {
	NodeIdentity
	// Held is set while the node's data went back and some of its placements were the
	// last finalized ones of their shards: the node is not used until an operator deletes
	// the row.
	Held bool
	// WentBack says why the node's data was last found to have gone back ("" if never).
	WentBack string
	// ResetGeneration is the metadata generation after the node's placements were last
	// marked inactive because its data went back.
	ResetGeneration int64
	// New is set when the node had no record: it is seen for the first time, or an
	// operator deleted its row (accepting a held node's data). Generation is then the
	// metadata generation read under the new record's lock: deleting a held node's row may
	// have changed placement states (nodeident.sql, accept_held_node).
	New        bool
	Generation int64
}

// ParseLSN parses a WAL position written as PostgreSQL writes pg_lsn ("16/B374D848").
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("store: bad WAL position %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("store: bad WAL position %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("store: bad WAL position %q: %w", s, err)
	}
	return h<<32 | l, nil
}

// FormatLSN writes a WAL position as pg_lsn does.
func FormatLSN(lsn uint64) string {
	return strconv.FormatUint(lsn>>32, 16) + "/" + strconv.FormatUint(lsn&0xffffffff, 16)
}

// WentBack says how id goes back from the recorded identity rec, or "" if it does not: a
// different system identifier (another data directory), a lower timeline or a lower WAL
// position (an older copy of the data, or a standby that had not received everything).
func WentBack(rec, id NodeIdentity) string {
	switch {
	case id.SystemID != rec.SystemID:
		return fmt.Sprintf("system identifier %d, last seen %d", id.SystemID, rec.SystemID)
	case id.Timeline < rec.Timeline:
		return fmt.Sprintf("timeline %d, last seen %d", id.Timeline, rec.Timeline)
	case id.LSN < rec.LSN:
		return fmt.Sprintf("WAL position %s, last seen %s", FormatLSN(id.LSN), FormatLSN(rec.LSN))
	}
	return ""
}

// CheckNodeIdentity compares what node n says about itself with its record. read asks
// the node, and runs while the record's row is locked: two proxies that read the node at
// different times record in the order they read (one that read before another recorded
// would otherwise take the node for gone back). A node seen for the first time is
// recorded as it is; one whose identity does not go back has its timeline and WAL
// position advanced. It returns the record as it was, what read returned, and how that
// goes back from the record ("" if it does not); a node that went back is left to
// ResolveNodeIdentity, and so is a held one.
func (s *Store) CheckNodeIdentity(ctx context.Context, n metadata.Node, read func(context.Context) (NodeIdentity, error)) (rec NodeRecord, id NodeIdentity, back string, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		found, err := lockNodeRecord(ctx, tx, n, &rec)
		if err != nil {
			return err
		}
		if id, err = read(ctx); err != nil {
			return err
		}
		if !found {
			tag, err := tx.Exec(ctx, `INSERT INTO pgs_distribution_metadata.node_identity
				(node_name, node_port, system_identifier, timeline, wal_lsn) VALUES ($1, $2, $3, $4, $5::text::pg_lsn)
				ON CONFLICT DO NOTHING`, n.Name, n.Port, id.SystemID, id.Timeline, FormatLSN(id.LSN))
			if err != nil {
				return fmt.Errorf("store: record node identity: %w", err)
			}
			if tag.RowsAffected() == 1 {
				rec.NodeIdentity, rec.New = id, true
				if err := tx.QueryRow(ctx, `SELECT value FROM pgs_distribution_metadata.generation`).Scan(&rec.Generation); err != nil {
					return fmt.Errorf("store: read the metadata generation: %w", err)
				}
				return nil
			}
			// Another proxy recorded the node first: compare with its record, reading
			// the node again under the lock.
			if found, err = lockNodeRecord(ctx, tx, n, &rec); err != nil || !found {
				return errors.Join(err, errors.New("store: node identity row vanished"))
			}
			if id, err = read(ctx); err != nil {
				return err
			}
		}
		back = WentBack(rec.NodeIdentity, id)
		if back != "" || rec.Held || (id.Timeline <= rec.Timeline && id.LSN <= rec.LSN) {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE pgs_distribution_metadata.node_identity
			SET timeline = $3, wal_lsn = $4::text::pg_lsn, checked_at = pg_catalog.now()
			WHERE node_name = $1 AND node_port = $2`, n.Name, n.Port, max(id.Timeline, rec.Timeline), FormatLSN(max(id.LSN, rec.LSN))); err != nil {
			return fmt.Errorf("store: record node identity: %w", err)
		}
		return nil
	})
	return rec, id, back, err
}

// lockNodeRecord reads and locks node n's row of node_identity into rec; found is false
// when there is none.
func lockNodeRecord(ctx context.Context, tx pgx.Tx, n metadata.Node, rec *NodeRecord) (found bool, err error) {
	var lsn string
	var wentBack *string
	err = tx.QueryRow(ctx, `SELECT system_identifier, timeline, wal_lsn::text, held, went_back, reset_generation
		FROM pgs_distribution_metadata.node_identity WHERE node_name = $1 AND node_port = $2 FOR UPDATE`, n.Name, n.Port).
		Scan(&rec.SystemID, &rec.Timeline, &lsn, &rec.Held, &wentBack, &rec.ResetGeneration)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: read node identity: %w", err)
	}
	if wentBack != nil {
		rec.WentBack = *wentBack
	}
	rec.LSN, err = ParseLSN(lsn)
	return err == nil, err
}

// ResolveNodeIdentity records the outcome for a node whose data went back: held (some of
// its placements are the last finalized ones of their shards, which could not be marked),
// or accepted: id becomes the node's identity, its placements having been marked inactive
// at metadata generation gen.
func (s *Store) ResolveNodeIdentity(ctx context.Context, n metadata.Node, id NodeIdentity, held bool, reason string, gen int64) error {
	var err error
	if held {
		_, err = s.pool.Exec(ctx, `UPDATE pgs_distribution_metadata.node_identity
			SET held = true, went_back = $3, went_back_at = pg_catalog.now(), checked_at = pg_catalog.now()
			WHERE node_name = $1 AND node_port = $2`, n.Name, n.Port, reason)
	} else {
		_, err = s.pool.Exec(ctx, `UPDATE pgs_distribution_metadata.node_identity
			SET system_identifier = $3, timeline = $4, wal_lsn = $5::text::pg_lsn, held = false,
			    went_back = $6, went_back_at = pg_catalog.now(), checked_at = pg_catalog.now(),
			    reset_generation = pg_catalog.greatest(reset_generation, $7)
			WHERE node_name = $1 AND node_port = $2`, n.Name, n.Port, id.SystemID, id.Timeline, FormatLSN(id.LSN), reason, gen)
	}
	if err != nil {
		return fmt.Errorf("store: record node identity: %w", err)
	}
	return nil
}

// NodeHeld reports whether node n is held (its data went back while it held the last
// finalized placement of some shard), and why.
func (s *Store) NodeHeld(ctx context.Context, n metadata.Node) (bool, string, error) {
	var held bool
	var why *string
	err := s.pool.QueryRow(ctx, `SELECT held, went_back FROM pgs_distribution_metadata.node_identity
		WHERE node_name = $1 AND node_port = $2`, n.Name, n.Port).Scan(&held, &why)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("store: read node identity: %w", err)
	}
	if why == nil {
		return held, "", nil
	}
	return held, *why, nil
}
