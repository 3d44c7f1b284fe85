//! Attachments a runtime makes through CNI: the runtime names the interface, the container id
//! marks the workload and its endpoint, and the dataplane owner tells what a namespace lacks.

use super::*;
use crate::dataplane::actor::CheckLocal;

fn cni_request(name: &str, netns: &str, ifname: &str, id: &str) -> AttachRequest {
    AttachRequest {
        name: name.into(),
        netns: netns.into(),
        networks: vec!["frontend".into()],
        ifname: Some(ifname.into()),
        cni: Some(id.into()),
        ..Default::default()
    }
}

async fn send(a: &Agent, req: AttachRequest) -> Result<Entry, AttachError> {
    a.net
        .send(AttachWorkload(req))
        .await
        .expect("mailbox")
        .map(|(e, _)| e)
}

#[test]
fn the_runtime_names_the_interface_and_the_container_id_marks_the_attachment() {
    actix::System::new().block_on(async {
        let a = Agent::start("cni", two_networks());
        a.dp.add_container("/run/test/pod");
        let e = send(&a, cni_request("pod", "/run/test/pod", "net1", "c0ffee"))
            .await
            .expect("attach");
        assert_eq!(e.cni.as_deref(), Some("c0ffee"));
        assert_eq!(e.interfaces[0].ifname, "net1");
        assert_eq!(e.interfaces[0].endpoint.cni.as_deref(), Some("c0ffee"));
        let again = send(&a, cni_request("pod", "/run/test/pod", "net1", "c0ffee")).await;
        assert!(
            matches!(again, Err(AttachError::IfnameTaken { ref ifname, .. }) if ifname == "net1"),
            "{again:?}"
        );
        let other = send(&a, cni_request("pod", "/run/test/pod", "net2", "beef")).await;
        assert!(matches!(other, Err(AttachError::Exists(_))), "{other:?}");

        let check = |netns: &str| a.dataplane.send(CheckLocal(netns.into()));
        let lacks = check("/run/test/pod")
            .await
            .expect("mailbox")
            .expect("check");
        assert!(lacks.is_empty(), "freshly attached: {lacks:?}");
        // The runtime's namespace loses its interface: the check lists what is missing and
        // changes nothing.
        let ops_before = a.dp.ops().len();
        a.dp.remove_container(std::path::Path::new("/run/test/pod"));
        a.dp.add_container("/run/test/pod");
        let lacks = check("/run/test/pod")
            .await
            .expect("mailbox")
            .expect("check");
        assert!(
            lacks.iter().any(|op| op.contains("net1")),
            "the lost veth is named: {lacks:?}"
        );
        assert_eq!(a.dp.ops().len(), ops_before, "a check applies nothing");
    });
}

#[test]
fn an_interface_name_the_kernel_refuses_leaves_nothing() {
    actix::System::new().block_on(async {
        let a = Agent::start("cni-bad", two_networks());
        a.dp.add_container("/run/test/pod");
        for bad in ["", "averyveryverylongname", "eth/0", "eth:0", "."] {
            let r = send(&a, cni_request("pod", "/run/test/pod", bad, "c1")).await;
            assert!(
                matches!(r, Err(AttachError::InvalidIfname(_))),
                "{bad:?}: {r:?}"
            );
        }
        let mut two = cni_request("pod", "/run/test/pod", "eth0", "c1");
        two.networks.push("backend".into());
        let r = send(&a, two).await;
        assert!(matches!(r, Err(AttachError::InvalidIfname(_))), "{r:?}");
        assert!(a.workloads().await.is_empty());
        assert!(a.published().await.is_empty());
    });
}
