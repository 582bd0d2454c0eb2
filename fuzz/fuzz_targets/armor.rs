//! De-armoring (D5 bodies): any bytes, an error or the data; armoring it again round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bin) = mixtasy::format::armor::decode(data) {
        assert_eq!(mixtasy::format::armor::decode(mixtasy::format::armor::encode(&bin).as_bytes()).unwrap(), bin);
    }
});
