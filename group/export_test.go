package group

// SignAs signs l with k whatever k's role: how a test makes a list that
// a non-admin signed.
func (l *Membership) SignAs(k MemberKey) error { return l.sign(k) }

// CheckInviteWrite is checkInviteWrite, for tests.
var CheckInviteWrite = checkInviteWrite
