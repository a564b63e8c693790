package proxy

import (
	"context"

	"github.com/pgshard/pgshard/metadata/pgerr"
)

// extended handles an extended-protocol message. It reports false when the connection
// must close.
func (ss *session) extended(ctx context.Context, typ byte, body []byte) bool {
	switch typ {
	case 'S':
		if ss.extSkip {
			ss.extSkip = false
		}
		ss.readyForQuery()
	case 'H':
		ss.flush()
	default:
		if !ss.extSkip {
			ss.sendError(pgerr.New(pgerr.FeatureNotSupported, "the extended query protocol is not supported yet"))
			ss.flush()
			ss.extSkip = true
		}
	}
	return true
}
