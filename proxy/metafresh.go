package proxy

import (
	"context"
	"time"
)

// currentMetadataTimeout bounds a statement's check that the metadata is current while
// the proxy's listener is down (Server.currentMetadata).
const currentMetadataTimeout = 2 * time.Second

// currentMetadata brings the cache up to date before a statement is planned, when the
// proxy's notification listener is not listening (store.Store.Current): another proxy
// may have marked a placement inactive meanwhile, and a read planned from the cache
// would then be served from the placement that missed an acknowledged write. While the
// listener listens it costs nothing; while it is down, one query on the coordinator per
// statement. A coordinator that cannot be reached leaves the cache as it is.
func (s *Server) currentMetadata(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, currentMetadataTimeout)
	defer cancel()
	if err := s.store.Current(ctx, s.cache); err != nil {
		s.log.Debug("could not check that the metadata is current; using the proxy's copy", "err", err)
	}
}
