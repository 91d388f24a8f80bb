package native

import "testing"

// TestFlowWindowGrowth drives one stream's receive side: frames of 1000
// bytes arrive while the application takes each at once ("keeps up"),
// half of them, or none. The credit the receiver gives back reaches the sender only
// once the sender has run out (a link slower than a window's worth of
// sending), so the sender marks a frame as using up its credit every
// window. The window
// doubles, up to its maximum, only when a blocked frame arrives while at
// most a quarter of the window is unread, and the growth is granted with
// the next credit given back.
func TestFlowWindowGrowth(t *testing.T) {
	const window, msg = 64 << 10, 1000
	cost := int64(msg + frameCost)
	tests := []struct {
		name       string
		maxWindow  int64
		takeEvery  int // the application takes one frame of every takeEvery as they arrive; 0: none
		wantWindow int64
	}{
		{"reader keeps up", 256 << 10, 1, 256 << 10},
		{"reader keeps up, no room to grow", window, 1, window},
		{"maximum below the window", 1 << 10, 1, window},
		{"reader takes half", 256 << 10, 2, window},
		{"reader takes nothing", 256 << 10, 0, window},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f flow
			f.init(window, tc.maxWindow, window, false)
			var granted, inFlight int64 // credit the sender got back; credit on its way
			sent := int64(0)            // what the sender spent
			for i := range 2000 {
				credit := window + granted - sent
				if credit <= 0 {
					if inFlight == 0 {
						break // the sender waits for good
					}
					granted, inFlight = granted+inFlight, 0 // the credit arrives
					credit = window + granted - sent
				}
				blocked := credit-cost <= 0
				if err := f.admit(msg, blocked); err != nil {
					t.Fatalf("admit with credit %d: %v", credit, err)
				}
				sent += cost
				buf := getRecvBuf(msg)
				f.push(buf, false)
				if tc.takeEvery > 0 && i%tc.takeEvery == 0 {
					m, err := f.take(nil, nil)
					if err != nil {
						t.Fatal(err)
					}
					putRecvBuf(m)
					inFlight += f.taken(msg)
				}
			}
			if f.window != tc.wantWindow {
				t.Fatalf("window %d, want %d", f.window, tc.wantWindow)
			}
			// What the receiver holds unread never exceeds the window it
			// granted by more than the frame that used up the credit.
			if unread := f.outstanding - f.unacked; unread > f.window+cost {
				t.Fatalf("%d bytes unread with a window of %d", unread, f.window)
			}
			if tc.takeEvery == 0 && sent > window+cost {
				t.Fatalf("a reader that took nothing let the sender spend %d bytes; window %d", sent, window)
			}
		})
	}
}
