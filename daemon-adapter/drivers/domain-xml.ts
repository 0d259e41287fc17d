/**
 * @module daemon-adapter/drivers/domain-xml
 * The libvirt domain XML template for one VM revision, and the DHCP host entry that
 * pins its IP to its MAC on the libvirt network (as Mulch does). All values are
 * escaped; the names and addresses are checked upstream as well.
 */

/** What the template needs to know about one revision. */
export interface DomainXmlInput {
  /** The libvirt domain name (`vmfront-<vm>-r<n>`). */
  readonly handle: string
  readonly vm: string
  readonly revision: number
  /** `<domain type=...>`, e.g. "kvm". */
  readonly domainType: string
  readonly cpus: number
  readonly ramMiB: number
  readonly pool: string
  readonly volume: string
  readonly network: string
  readonly mac: string
}

/** The XML namespace of vmfront's `<metadata>` entry. */
export const METADATA_NS = 'https://github.com/vmfront/vmfront/xmlns/vm/1'

/** Escapes text for an XML attribute or text node. */
export function xmlEscape (text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string)
}

/** Renders the domain XML of a revision (validated by `virsh define --validate`). */
export function domainXml (input: DomainXmlInput): string {
  const e = xmlEscape
  return `<domain type='${e(input.domainType)}'>
  <name>${e(input.handle)}</name>
  <metadata>
    <vmfront:vm xmlns:vmfront='${METADATA_NS}' name='${e(input.vm)}' revision='${input.revision}'/>
  </metadata>
  <memory unit='MiB'>${input.ramMiB}</memory>
  <vcpu placement='static'>${input.cpus}</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='host-passthrough'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='${e(input.pool)}' volume='${e(input.volume)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='${e(input.mac)}'/>
      <source network='${e(input.network)}'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
  </devices>
</domain>
`
}

/** The `<host>` element `virsh net-update <net> add|delete ip-dhcp-host` takes. */
export function dhcpHostXml (mac: string, name: string, ip: string): string {
  return `<host mac='${xmlEscape(mac)}' name='${xmlEscape(name)}' ip='${xmlEscape(ip)}'/>`
}
