//! Crafting hostile zip files from honest ones, for the package readers' tests.

/// Rewrites the uncompressed size of the entries named `names` to `size` in both their local
/// and their central headers (what a crafted zip bomb does).
pub fn patch_declared_sizes(zip: &mut [u8], names: &[&str], size: u32) {
    let mut i = 0;
    while i + 46 < zip.len() {
        let sig = u32::from_le_bytes([zip[i], zip[i + 1], zip[i + 2], zip[i + 3]]);
        let (name_off, len_off, size_off) = match sig {
            0x0403_4b50 => (30, 26, 22),
            0x0201_4b50 => (46, 28, 24),
            _ => {
                i += 1;
                continue;
            }
        };
        let n = u16::from_le_bytes([zip[i + len_off], zip[i + len_off + 1]]) as usize;
        if zip
            .get(i + name_off..i + name_off + n)
            .is_some_and(|got| names.iter().any(|name| name.as_bytes() == got))
        {
            zip[i + size_off..i + size_off + 4].copy_from_slice(&size.to_le_bytes());
        }
        i += 4;
    }
}
