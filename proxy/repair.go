package proxy

import (
	"context"

	"github.com/pgshard/pgshard/metadata/pgerr"
)

// repairShardStatement handles REPAIR SHARD <id>.
func (ss *session) repairShardStatement(ctx context.Context, arg string) error {
	return pgerr.New(pgerr.FeatureNotSupported, "REPAIR SHARD is not available yet")
}

// runRepairer is the background repairer.
func (s *Server) runRepairer(ctx context.Context) {}
