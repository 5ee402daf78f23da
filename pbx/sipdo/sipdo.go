// Package sipdo sends a request that needs no dialog (BYE, CANCEL,
// NOTIFY, OPTIONS, REGISTER) through sipgo's client, exactly as built,
// and returns its final response.
//
// Why not sipgo's Client.Do alone: when a client transaction ends without
// a final response and without an error (it was terminated, as when the
// transaction layer shuts down under it), Client.Do returns neither, and
// a caller reading the response's status code panics. Do turns that into
// ErrNoResponse.
package sipdo

import (
	"context"
	"errors"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// ErrNoResponse: the transaction ended without a final response.
var ErrNoResponse = errors.New("the transaction ended without a final response")

// Client is what Do needs of sipgo's client.
type Client interface {
	Do(ctx context.Context, req *sip.Request, opts ...sipgo.ClientRequestOption) (*sip.Response, error)
}

// Do sends req unchanged (no Via, tags or headers added by the client)
// and returns its final response, or an error: never neither.
func Do(ctx context.Context, c Client, req *sip.Request) (*sip.Response, error) {
	res, err := c.Do(ctx, req, Unchanged)
	if err == nil && res == nil {
		err = ErrNoResponse
	}
	return res, err
}

// Unchanged is the client option that sends a fully built request as it
// is.
func Unchanged(*sipgo.Client, *sip.Request) error { return nil }
