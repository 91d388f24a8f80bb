package grpc

// WaitCharge is what a call waiting for its request is charged.
const WaitCharge = waitCharge
