//! PKCS#7 / CMS SignedData as the HAP scheme uses it: one signer, signed attributes
//! (contentType, signingTime, messageDigest), the whole certificate chain embedded. Parsing,
//! signature verification (ECDSA P-256/P-384 with SHA-256/384, RSA PKCS#1 v1.5) with `ring`,
//! chain building to trust roots, and building a SignedData for `oxh hap sign`.

use crate::der::{self, DerError, Reader, oids, tag};
use ring::signature::{self as rs, UnparsedPublicKey};
use sha2::{Digest, Sha256, Sha384};
use x509_parser::prelude::*;

/// A parsed SignedData; slices borrow the input.
#[derive(Debug, Clone)]
pub struct SignedData<'a> {
    /// The encapsulated content (the signed bytes), `None` if detached.
    pub content: Option<&'a [u8]>,
    /// DER certificates in the order the file lists them.
    pub certs: Vec<&'a [u8]>,
    /// The signers.
    pub signers: Vec<SignerInfo<'a>>,
}

/// One SignerInfo.
#[derive(Debug, Clone)]
pub struct SignerInfo<'a> {
    /// The issuer Name of the signer's certificate (DER), if identified by issuer+serial.
    pub issuer: Option<&'a [u8]>,
    /// The serial number's content bytes.
    pub serial: Option<&'a [u8]>,
    /// Digest algorithm OID content.
    pub digest_alg: &'a [u8],
    /// The signed attributes as encoded (tag \[0\]); the signature covers them re-tagged as SET.
    pub signed_attrs: Option<der::Tlv<'a>>,
    /// Signature algorithm OID content.
    pub sig_alg: &'a [u8],
    /// The signature value.
    pub signature: &'a [u8],
}

/// Why a SignedData does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs7Error {
    /// Not DER, or not SignedData.
    #[error("{0}")]
    Malformed(String),
    /// The signer's certificate is not in the SignedData.
    #[error("the signer's certificate is not in the signature")]
    NoSignerCert,
    /// The messageDigest attribute does not match the content.
    #[error("the messageDigest attribute does not match the content")]
    DigestMismatch,
    /// The signature value does not verify with the signer's key.
    #[error("the signature does not verify with the signer certificate's key")]
    BadSignature,
    /// An algorithm we do not implement.
    #[error("unsupported algorithm: {0}")]
    Unsupported(String),
}

impl From<DerError> for Pkcs7Error {
    fn from(e: DerError) -> Self {
        Pkcs7Error::Malformed(e.to_string())
    }
}

/// Parses a ContentInfo holding SignedData.
pub fn parse(buf: &[u8]) -> Result<SignedData<'_>, Pkcs7Error> {
    let ci = der::parse_one(buf)?;
    if ci.tag != tag::SEQUENCE {
        return Err(Pkcs7Error::Malformed(
            "ContentInfo is not a SEQUENCE".into(),
        ));
    }
    let mut r = ci.reader();
    let ct = r.expect(tag::OID, "contentType")?;
    if ct.value != oids::SIGNED_DATA {
        return Err(Pkcs7Error::Malformed("not a PKCS#7 SignedData".into()));
    }
    let explicit = r.expect(tag::CTX0, "content [0]")?;
    let sd = der::parse_one(explicit.value)?;
    let mut r = sd.reader();
    r.expect(tag::INTEGER, "version")?;
    r.expect(tag::SET, "digestAlgorithms")?;
    let encap = r.expect(tag::SEQUENCE, "encapContentInfo")?;
    let mut er = encap.reader();
    er.expect(tag::OID, "eContentType")?;
    let content = match er.optional(tag::CTX0)? {
        Some(c) => Some(der::parse_one(c.value)?.value),
        None => None,
    };
    let mut certs = Vec::new();
    if let Some(c) = r.optional(tag::CTX0)? {
        let mut cr = c.reader();
        while !cr.is_empty() {
            certs.push(cr.any()?.raw);
        }
    }
    r.optional(tag::CTX1)?;
    let infos = r.expect(tag::SET, "signerInfos")?;
    let mut signers = Vec::new();
    let mut ir = infos.reader();
    while !ir.is_empty() {
        let si = ir.expect(tag::SEQUENCE, "SignerInfo")?;
        let mut s = si.reader();
        s.expect(tag::INTEGER, "SignerInfo version")?;
        let sid = s.any()?;
        let (issuer, serial) = if sid.tag == tag::SEQUENCE {
            let mut sr = sid.reader();
            let name = sr.expect(tag::SEQUENCE, "issuer")?;
            let serial = sr.expect(tag::INTEGER, "serial")?;
            (Some(name.raw), Some(serial.value))
        } else {
            (None, None)
        };
        let da = s.expect(tag::SEQUENCE, "digestAlgorithm")?;
        let digest_alg = da.reader().expect(tag::OID, "digest OID")?.value;
        let signed_attrs = s.optional(tag::CTX0)?;
        let sa = s.expect(tag::SEQUENCE, "signatureAlgorithm")?;
        let sig_alg = sa.reader().expect(tag::OID, "signature OID")?.value;
        let signature = s.expect(tag::OCTET_STRING, "signature")?.value;
        signers.push(SignerInfo {
            issuer,
            serial,
            digest_alg,
            signed_attrs,
            sig_alg,
            signature,
        });
    }
    if signers.is_empty() {
        return Err(Pkcs7Error::Malformed("no SignerInfo".into()));
    }
    Ok(SignedData {
        content,
        certs,
        signers,
    })
}

fn hash(alg: &[u8], data: &[u8]) -> Result<Vec<u8>, Pkcs7Error> {
    if alg == oids::SHA256 {
        Ok(Sha256::digest(data).to_vec())
    } else if alg == oids::SHA384 {
        Ok(Sha384::digest(data).to_vec())
    } else {
        Err(Pkcs7Error::Unsupported(format!("digest {alg:02x?}")))
    }
}

/// Verifies `sig` over `msg` with a certificate's SubjectPublicKeyInfo, `sig_alg` naming the
/// scheme (`digest_alg` picks the hash where `sig_alg` only names the key type).
pub fn verify_with_spki(
    spki: &SubjectPublicKeyInfo<'_>,
    sig_alg: &[u8],
    digest_alg: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> Result<(), Pkcs7Error> {
    let key = spki.subject_public_key.data.as_ref();
    let sha384 = sig_alg == oids::ECDSA_SHA384
        || sig_alg == oids::RSA_SHA384
        || ((sig_alg == oids::EC_PUBLIC_KEY || sig_alg == oids::RSA) && digest_alg == oids::SHA384);
    let ec = sig_alg == oids::ECDSA_SHA256
        || sig_alg == oids::ECDSA_SHA384
        || sig_alg == oids::EC_PUBLIC_KEY;
    let rsa = sig_alg == oids::RSA_SHA256 || sig_alg == oids::RSA_SHA384 || sig_alg == oids::RSA;
    let alg: &dyn rs::VerificationAlgorithm = if ec {
        match (key.len(), sha384) {
            (65, false) => &rs::ECDSA_P256_SHA256_ASN1,
            (65, true) => &rs::ECDSA_P256_SHA384_ASN1,
            (97, false) => &rs::ECDSA_P384_SHA256_ASN1,
            (97, true) => &rs::ECDSA_P384_SHA384_ASN1,
            (n, _) => return Err(Pkcs7Error::Unsupported(format!("EC key of {n} bytes"))),
        }
    } else if rsa {
        if sha384 {
            &rs::RSA_PKCS1_2048_8192_SHA384
        } else {
            &rs::RSA_PKCS1_2048_8192_SHA256
        }
    } else {
        return Err(Pkcs7Error::Unsupported(format!("signature {sig_alg:02x?}")));
    };
    UnparsedPublicKey::new(alg, key)
        .verify(msg, sig)
        .map_err(|_| Pkcs7Error::BadSignature)
}

impl<'a> SignedData<'a> {
    /// The signer's certificate (DER) for signer `i`.
    pub fn signer_cert(&self, i: usize) -> Result<&'a [u8], Pkcs7Error> {
        let s = self.signers.get(i).ok_or(Pkcs7Error::NoSignerCert)?;
        for c in &self.certs {
            let Ok((_, x)) = X509Certificate::from_der(c) else {
                continue;
            };
            let serial_ok = s
                .serial
                .is_some_and(|sn| trim0(sn) == trim0(x.raw_serial()));
            let issuer_ok = s.issuer.is_some_and(|i| i == x.issuer().as_raw());
            if serial_ok && issuer_ok {
                return Ok(c);
            }
        }
        // Signed by subject key id, or a lone certificate: take the first one.
        if s.issuer.is_none() && self.certs.len() == 1 {
            return Ok(self.certs[0]);
        }
        Err(Pkcs7Error::NoSignerCert)
    }

    /// Verifies the first signer over the encapsulated content; returns its certificate.
    pub fn verify(&self) -> Result<&'a [u8], Pkcs7Error> {
        let content = self
            .content
            .ok_or_else(|| Pkcs7Error::Malformed("no encapsulated content".into()))?;
        self.verify_content(content)
    }

    /// Verifies the first signer over `content`, given apart: a detached signature, as the
    /// code signatures are (their content, the fs-verity digest, is recomputed by the
    /// verifier). Returns the signer's certificate.
    pub fn verify_detached(&self, content: &[u8]) -> Result<&'a [u8], Pkcs7Error> {
        if self.content.is_some_and(|c| c != content) {
            return Err(Pkcs7Error::DigestMismatch);
        }
        self.verify_content(content)
    }

    /// The value of signed attribute `oid` of the first signer, as its first value's TLV.
    pub fn signed_attr(&self, oid: &[u8]) -> Result<Option<der::Tlv<'a>>, Pkcs7Error> {
        let Some(attrs) = self.signers.first().and_then(|s| s.signed_attrs) else {
            return Ok(None);
        };
        let mut r = attrs.reader();
        while !r.is_empty() {
            let a = r.expect(tag::SEQUENCE, "attribute")?;
            let mut ar = a.reader();
            if ar.expect(tag::OID, "attribute type")?.value == oid {
                let set = ar.expect(tag::SET, "attribute values")?;
                return Ok(Some(set.reader().any()?));
            }
        }
        Ok(None)
    }

    fn verify_content(&self, content: &[u8]) -> Result<&'a [u8], Pkcs7Error> {
        let s = &self.signers[0];
        let cert_der = self.signer_cert(0)?;
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| Pkcs7Error::Malformed(format!("signer certificate: {e}")))?;
        let msg: Vec<u8> = match &s.signed_attrs {
            Some(attrs) => {
                let md = message_digest(attrs)?;
                if md != hash(s.digest_alg, content)? {
                    return Err(Pkcs7Error::DigestMismatch);
                }
                let mut m = attrs.raw.to_vec();
                m[0] = tag::SET;
                m
            }
            None => content.to_vec(),
        };
        verify_with_spki(
            cert.public_key(),
            s.sig_alg,
            s.digest_alg,
            &msg,
            s.signature,
        )?;
        Ok(cert_der)
    }
}

fn trim0(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&x| x == 0).count();
    &b[n.min(b.len().saturating_sub(1))..]
}

fn message_digest<'a>(attrs: &der::Tlv<'a>) -> Result<&'a [u8], Pkcs7Error> {
    let mut r = attrs.reader();
    while !r.is_empty() {
        let a = r.expect(tag::SEQUENCE, "attribute")?;
        let mut ar = a.reader();
        let oid = ar.expect(tag::OID, "attribute type")?;
        if oid.value == oids::MESSAGE_DIGEST {
            let set = ar.expect(tag::SET, "attribute values")?;
            return Ok(set
                .reader()
                .expect(tag::OCTET_STRING, "messageDigest")?
                .value);
        }
    }
    Err(Pkcs7Error::Malformed("no messageDigest attribute".into()))
}

/// The result of building a chain from a signer certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Subject common names from the signer up, e.g. Release -> CA -> Root CA.
    pub subjects: Vec<String>,
    /// Every link's signature verified (each certificate by its issuer's key).
    pub links_valid: bool,
    /// The chain ends at one of the trust roots given.
    pub trusted: bool,
    /// Why not, if not.
    pub problem: Option<String>,
}

/// Subject CN (or the whole subject) of a DER certificate.
pub fn subject_cn(der: &[u8]) -> String {
    match X509Certificate::from_der(der) {
        Ok((_, c)) => c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok().map(str::to_string))
            .unwrap_or_else(|| c.subject().to_string()),
        Err(_) => "(unparsable certificate)".into(),
    }
}

/// Builds the chain from `leaf` over `pool` (the embedded certificates) to one of `roots`,
/// checking each link's signature. A root matches by identical DER, or by subject and key.
pub fn build_chain(leaf: &[u8], pool: &[&[u8]], roots: &[Vec<u8>]) -> Chain {
    let mut subjects = Vec::new();
    let mut cur = leaf.to_vec();
    let parsed_roots: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = roots
        .iter()
        .filter_map(|r| {
            let (_, c) = X509Certificate::from_der(r).ok()?;
            Some((
                r.clone(),
                c.subject().as_raw().to_vec(),
                c.public_key().raw.to_vec(),
            ))
        })
        .collect();
    let fail = |subjects: Vec<String>, links: bool, p: String| Chain {
        subjects,
        links_valid: links,
        trusted: false,
        problem: Some(p),
    };
    for _ in 0..8 {
        let Ok((_, c)) = X509Certificate::from_der(&cur) else {
            return fail(subjects, false, "unparsable certificate in chain".into());
        };
        subjects.push(subject_cn(&cur));
        // Is this certificate itself a trust root?
        if parsed_roots
            .iter()
            .any(|(d, s, k)| *d == cur || (s == c.subject().as_raw() && k == c.public_key().raw))
        {
            return Chain {
                subjects,
                links_valid: true,
                trusted: true,
                problem: None,
            };
        }
        // Its issuer: first among the roots, then the embedded pool.
        let issuer_raw = c.issuer().as_raw();
        let cand: Vec<Vec<u8>> = parsed_roots
            .iter()
            .filter(|(_, s, _)| s == issuer_raw)
            .map(|(d, _, _)| d.clone())
            .chain(pool.iter().filter_map(|p| {
                let (_, pc) = X509Certificate::from_der(p).ok()?;
                (pc.subject().as_raw() == issuer_raw).then(|| p.to_vec())
            }))
            .collect();
        let mut next = None;
        for issuer in cand {
            let Ok((_, ic)) = X509Certificate::from_der(&issuer) else {
                continue;
            };
            let ok = verify_with_spki(
                ic.public_key(),
                c.signature_algorithm.algorithm.as_bytes(),
                &[],
                c.tbs_certificate.as_ref(),
                c.signature_value.data.as_ref(),
            )
            .is_ok();
            if ok {
                next = Some(issuer);
                break;
            }
        }
        match next {
            Some(n) if n == cur => {
                return fail(
                    subjects,
                    true,
                    "self-signed root is not among this device's trust roots".into(),
                );
            }
            Some(n) => cur = n,
            None => {
                let issuer = c
                    .issuer()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok().map(str::to_string))
                    .unwrap_or_else(|| c.issuer().to_string());
                return fail(
                    subjects,
                    false,
                    format!(
                        "its issuer \"{issuer}\" is neither embedded in the signature nor among this device's trust roots"
                    ),
                );
            }
        }
    }
    fail(subjects, true, "chain too long".into())
}

/// Builds a ContentInfo/SignedData over `content` with signed attributes, signed by
/// `key` (PKCS#8 ECDSA P-256) whose certificate is `chain[0]`; all of `chain` is embedded.
pub fn sign(
    content: &[u8],
    key_pkcs8: &[u8],
    chain: &[Vec<u8>],
    signing_time_utc: &str,
) -> Result<Vec<u8>, Pkcs7Error> {
    sign_with(
        content,
        key_pkcs8,
        chain,
        signing_time_utc,
        &SignOptions::default(),
    )
}

/// How [`sign_with`] shapes the SignedData beyond [`sign`]'s defaults.
#[derive(Debug, Clone, Default)]
pub struct SignOptions<'o> {
    /// Leave the content out (a detached signature, as OpenHarmony's code signatures are).
    pub detached: bool,
    /// More signed attributes: (OID content, one encoded value), e.g. the code signature's
    /// ownerID.
    pub extra_attrs: Vec<(&'o [u8], Vec<u8>)>,
}

/// [`sign`] with [`SignOptions`].
pub fn sign_with(
    content: &[u8],
    key_pkcs8: &[u8],
    chain: &[Vec<u8>],
    signing_time_utc: &str,
    opts: &SignOptions<'_>,
) -> Result<Vec<u8>, Pkcs7Error> {
    let leaf = chain
        .first()
        .ok_or_else(|| Pkcs7Error::Malformed("no signing certificate".into()))?;
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| Pkcs7Error::Malformed(format!("signing certificate: {e}")))?;
    let rng = ring::rand::SystemRandom::new();
    let kp = rs::EcdsaKeyPair::from_pkcs8(&rs::ECDSA_P256_SHA256_ASN1_SIGNING, key_pkcs8, &rng)
        .map_err(|e| Pkcs7Error::Malformed(format!("key is not a PKCS#8 P-256 key: {e}")))?;
    use ring::signature::KeyPair;
    if kp.public_key().as_ref() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(Pkcs7Error::Malformed(
            "the key does not belong to the signing certificate".into(),
        ));
    }
    let sha256_alg = der::seq(&[&der::oid(oids::SHA256), &der::tlv(tag::NULL, &[])]);
    let attr = |oid: &[u8], val: Vec<u8>| der::seq(&[&der::oid(oid), &der::set_of(&[&val])]);
    let mut attrs = vec![
        attr(oids::CONTENT_TYPE, der::oid(oids::DATA)),
        attr(
            oids::SIGNING_TIME,
            der::tlv(tag::UTC_TIME, signing_time_utc.as_bytes()),
        ),
        attr(
            oids::MESSAGE_DIGEST,
            der::tlv(tag::OCTET_STRING, &Sha256::digest(content)),
        ),
    ];
    for (oid, value) in &opts.extra_attrs {
        attrs.push(attr(oid, value.clone()));
    }
    let refs: Vec<&[u8]> = attrs.iter().map(Vec::as_slice).collect();
    let attrs_set = der::set_of(&refs);
    let sig = kp
        .sign(&rng, &attrs_set)
        .map_err(|_| Pkcs7Error::Malformed("signing failed".into()))?;
    let mut attrs_ctx = attrs_set.clone();
    attrs_ctx[0] = tag::CTX0;
    let sid = der::seq(&[
        cert.issuer().as_raw(),
        &der::tlv(tag::INTEGER, cert.raw_serial()),
    ]);
    let signer = der::seq(&[
        &der::small_int(1),
        &sid,
        &sha256_alg,
        &attrs_ctx,
        &der::seq(&[&der::oid(oids::ECDSA_SHA256)]),
        &der::tlv(tag::OCTET_STRING, sig.as_ref()),
    ]);
    let certs: Vec<u8> = chain.concat();
    let sd = der::seq(&[
        &der::small_int(1),
        &der::set_of(&[&sha256_alg]),
        &if opts.detached {
            der::seq(&[&der::oid(oids::DATA)])
        } else {
            der::seq(&[
                &der::oid(oids::DATA),
                &der::tlv(tag::CTX0, &der::tlv(tag::OCTET_STRING, content)),
            ])
        },
        &der::tlv(tag::CTX0, &certs),
        &der::set_of(&[&signer]),
    ]);
    Ok(der::seq(&[
        &der::oid(oids::SIGNED_DATA),
        &der::tlv(tag::CTX0, &sd),
    ]))
}

/// Walks a DER value for fuzzing: parse, then try to verify, never panicking.
pub fn fuzz_one(buf: &[u8]) {
    if let Ok(sd) = parse(buf) {
        let _ = sd.verify();
        if let Ok(c) = sd.signer_cert(0) {
            let _ = build_chain(c, &sd.certs, &[]);
        }
    }
    let _ = Reader::new(buf).any();
}
