package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// UnmarshalYAML reads "90s", "10m", "1h30m" (Go duration syntax) or a plain
// whole number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as 90s, 10m or 1h30m, got %s", kindName(n))
	}
	if n.ShortTag() == "!!int" {
		secs, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil || secs > math.MaxInt64/int64(time.Second) || secs < math.MinInt64/int64(time.Second) {
			return fmt.Errorf("invalid duration %q: whole seconds out of range", n.Value)
		}
		*d = Duration(time.Duration(secs) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("invalid duration %q (write e.g. 90s, 10m, 1h30m, or whole seconds)", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration the short way: "10m", "1h30m", "90ms".
func (d Duration) MarshalYAML() (any, error) {
	return d.String(), nil
}

// String formats d like time.Duration but without trailing zero units
// ("10m" rather than "10m0s").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
