package location

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ParseSource splits a binding's Source, "transport:ip:port", into the
// transport (upper case: UDP, TCP or TLS) and "ip:port", for sending to
// the phone where its REGISTER came from.
func ParseSource(src string) (transport, hostport string, err error) {
	tp, hp, ok := strings.Cut(src, ":")
	if !ok {
		return "", "", fmt.Errorf("binding source %q: want transport:ip:port", src)
	}
	tp = strings.ToUpper(tp)
	switch tp {
	case "UDP", "TCP", "TLS":
	default:
		return "", "", fmt.Errorf("binding source %q: unsupported transport", src)
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", "", fmt.Errorf("binding source %q: %w", src, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return "", "", fmt.Errorf("binding source %q: bad port", src)
	}
	if host == "" {
		return "", "", fmt.Errorf("binding source %q: no host", src)
	}
	return tp, hp, nil
}
