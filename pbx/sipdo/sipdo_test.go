package sipdo

import (
	"context"
	"errors"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

type fakeClient struct {
	res *sip.Response
	err error
}

func (f fakeClient) Do(context.Context, *sip.Request, ...sipgo.ClientRequestOption) (*sip.Response, error) {
	return f.res, f.err
}

func TestDo(t *testing.T) {
	req := sip.NewRequest(sip.BYE, sip.Uri{Host: "192.0.2.1"})
	ok := sip.NewResponseFromRequest(req, 200, "OK", nil)
	boom := errors.New("transport down")
	tests := []struct {
		name    string
		c       fakeClient
		wantRes *sip.Response
		wantErr error
	}{
		{"an answer", fakeClient{res: ok}, ok, nil},
		{"an error", fakeClient{err: boom}, nil, boom},
		{"neither (transaction terminated)", fakeClient{}, nil, ErrNoResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Do(context.Background(), tt.c, req)
			if res != tt.wantRes || !errors.Is(err, tt.wantErr) {
				t.Errorf("Do = %v, %v; want %v, %v", res, err, tt.wantRes, tt.wantErr)
			}
		})
	}
}
