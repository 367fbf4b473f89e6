package regproto

import (
	"bytes"
	"sync"
	"testing"
)

// TestSignerMatchesMarshal: a signer reusing its HMAC states, also from
// several goroutines, signs exactly as Marshal does.
func TestSignerMatchesMarshal(t *testing.T) {
	s := &signer{secret: nveSecret}
	msgs := []*Message{
		fullRequest(),
		{Type: TypeRequest, KeyID: 7, Seq: 1, Lifetime: 1},
		{Type: TypeReply, KeyID: 99, Seq: 2, Status: StatusRejected, Reason: ReasonReplay},
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				m := *msgs[(g+i)%len(msgs)]
				want, err := m.Marshal(nveSecret)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := s.marshal(&m)
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(got, want) {
					t.Errorf("message %d: signer gave\n%x\nMarshal gave\n%x", (g+i)%len(msgs), got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}
