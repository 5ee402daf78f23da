package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// DialFirst returns a ReceiverConfig.Dial that tries addrs in order (the
// crossover address first, then the LAN one), each for at most timeout
// (0: 1 s), and returns the first connection made.
func DialFirst(timeout time.Duration, addrs ...string) func(ctx context.Context) (net.Conn, error) {
	timeout = orDefault(timeout, time.Second)
	return func(ctx context.Context) (net.Conn, error) {
		if len(addrs) == 0 {
			return nil, errors.New("no address to dial")
		}
		var errs []error
		for _, a := range addrs {
			d := net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Second}
			c, err := d.DialContext(ctx, "tcp", a)
			if err == nil {
				return c, nil
			}
			errs = append(errs, fmt.Errorf("dialling %s: %w", a, err))
			if ctx.Err() != nil {
				break
			}
		}
		return nil, errors.Join(errs...)
	}
}
