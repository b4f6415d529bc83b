package clickhouse

import (
	"errors"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// unavailableCodes are ClickHouse's error codes that mean "not now" rather
// than "not this query": too many simultaneous queries (202), a timeout
// (159, 209), a network error between servers (210), a replica that is read
// only or without ZooKeeper (242, 225, 999).
var unavailableCodes = map[int32]bool{202: true, 159: true, 209: true, 210: true, 242: true, 225: true, 999: true}

// Unavailable reports whether err, from a Store method, means ClickHouse
// cannot answer now and the same call may succeed later: every connection
// of the pool busy past the dial timeout, or one of unavailableCodes.
// Network errors (refused, reset, timeouts) are not listed here: callers
// recognise them as such (net.Error).
func Unavailable(err error) bool {
	if errors.Is(err, ch.ErrAcquireConnTimeout) {
		return true
	}
	var ex *proto.Exception
	return errors.As(err, &ex) && unavailableCodes[ex.Code]
}
