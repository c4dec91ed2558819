"""FIX 4.4 client edge (quickfix): settings, codec, acceptor, the benchmark floor, load generator.

* `settings`: quickfix SessionSettings from plain Python data, credentials, data dictionary;
* `codec`: quickfix messages <-> ORDER_REQUEST / EXECUTION_REPORT records, rejects;
* `acceptor`: the quickfix acceptor shell handing orders to an `OrderSink`;
* `floor`: a bare acceptor that answers orders itself (the `gateway_e2e` baseline);
* `loadgen`: a quickfix initiator driving orders at a target rate, measuring round trips.

Like every adapter this package imports `tectra.schema` only. Import the submodules directly;
this package module stays empty so importing one part does not import quickfix's others.
"""
