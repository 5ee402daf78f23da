package pbx

import (
	"fmt"
	"net/netip"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

// newVoicemail sets up the mailboxes over the store (a store without the
// voicemail methods, as in some tests, gets one in memory).
func (p *PBX) newVoicemail(o Options, client *sipgo.Client, mediaAddr netip.Addr, redirect func(*sip.Request) (bool, error)) (*voicemail.Service, error) {
	st, ok := o.Store.(voicemail.Store)
	if !ok {
		o.Logger.Warn("the store keeps no voicemail: messages are kept in memory only")
		st = voicemail.NewMemStore()
	}
	vm, err := voicemail.New(voicemail.Options{
		Client:    client,
		Auth:      p.auth,
		Directory: p,
		Store:     st,
		CDR:       o.Store.AppendCDR,
		Contact:   p.contact,
		Prepare:   func(req *sip.Request) { p.calls.Prepare(req) },
		Redirect:  redirect,
		Config:    func() *config.Voicemail { return p.cfg.Load().Voicemail },
		MediaAddr: mediaAddr,
		Contacts:  p.loc.Lookup,
		// The mailbox's RTP port comes from sip.rtp_ports, as the relay's.
		RTPPort: func() (voicemail.PortLease, error) {
			l, err := p.relay.Lease()
			if err != nil {
				return nil, err
			}
			return l, nil
		},
		// The twin that takes over reopens the port of a message being
		// recorded, to carry the call on.
		RTPPortAt: func(port int) (voicemail.PortLease, error) {
			l, err := p.relay.LeaseAt(port)
			if err != nil {
				return nil, err
			}
			return l, nil
		},
		Logger: o.Logger.With("component", "voicemail"),
	})
	if err != nil {
		return nil, fmt.Errorf("pbx: voicemail: %w", err)
	}
	return vm, nil
}

// serveRegister is the registrar's handler followed by the mailbox's
// unsolicited message-summary NOTIFY to a phone that registered while
// messages wait. Only a REGISTER the registrar accepted reaches the
// mailbox: a challenged or refused one (most REGISTERs are challenged
// first, answered on the socket's reader, see registerConn) costs it
// nothing and tells no phone anything.
func (p *PBX) serveRegister(req *sip.Request, tx sip.ServerTransaction) {
	atx := acceptedTx{ServerTransaction: tx}
	p.reg.ServeRegister(req, &atx)
	if atx.accepted {
		p.vm.Registered(req)
	}
}

// acceptedTx is a server transaction that notes whether the answer was
// a 2xx (even one the network then lost: the bindings are made).
type acceptedTx struct {
	sip.ServerTransaction
	accepted bool
}

func (t *acceptedTx) Respond(res *sip.Response) error {
	t.accepted = t.accepted || res.IsSuccess()
	return t.ServerTransaction.Respond(res)
}
