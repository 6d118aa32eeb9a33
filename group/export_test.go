package group

import (
	"context"
	"time"
)

// SignAs signs l with k whatever k's role: how a test makes a list that
// a non-admin signed.
func (l *Membership) SignAs(k MemberKey) error { return l.sign(k) }

// CheckInviteWrite is checkInviteWrite, for tests.
var CheckInviteWrite = checkInviteWrite

// HandOverAt is HandOver at time now: how a test sees an unclaimed use
// dropped once its grace has passed without waiting for it.
func (g *Group) HandOverAt(ctx context.Context, now time.Time) (int, error) {
	return g.handOver(ctx, now)
}
